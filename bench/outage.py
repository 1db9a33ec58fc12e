"""A 20 s PostgreSQL outage under steady chat load: nothing lost, latency unchanged.

The Dify-shaped example app runs under opentelemetry-instrument (gunicorn) exporting
to a scratch PostgreSQL database, with chats arriving at a steady pace; the database
then refuses connections (ALTER DATABASE ... ALLOW_CONNECTIONS false, sessions ended)
for 20 s. Prints chats sent, rows stored, lost (must be 0), and the app's p99 latency
before, during and after the outage, all from this one run.

Usage: python bench/outage.py [--outage 20] [--rate 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from outage import Load, new_run, refuse_connections, stored

from chatspan.store.engine import make_engine
from chatspan.store.migrate import upgrade

from pgdb import libpq_dsn, scratch_database
from servers import clean_env, run_app, wait_for


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--outage", type=float, default=20)
    parser.add_argument("--rate", type=float, default=20, help="chats per second")
    args = parser.parse_args()
    base = os.environ.get("CHATSPAN_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    with scratch_database(base, "outagebench") as url, tempfile.TemporaryDirectory() as scratch:
        engine = make_engine(url, timeout_s=30)
        upgrade(engine)
        engine.dispose()
        dsn = libpq_dsn(url)
        database, admin = dsn.rsplit("/", 1)[-1], libpq_dsn(url.rsplit("/", 1)[0] + "/postgres")
        env = clean_env(
            CHATSPAN_DATABASE_URL=url,
            CHATSPAN_SPOOL_DIR=str(Path(scratch) / "spool"),
            CHATSPAN_EXPORT_TIMEOUT_S="5",
            OTEL_BSP_SCHEDULE_DELAY="200",
        )
        run = new_run()
        with run_app("gunicorn", Path(scratch), env) as app:
            load = Load(app.base_url, run, rate_per_s=args.rate)
            load.start()
            time.sleep(2)
            load.next_phase("before")
            time.sleep(10)
            load.next_phase("during")
            refuse_connections(admin, database, True)
            try:
                time.sleep(args.outage)
            finally:
                refuse_connections(admin, database, False)
            load.next_phase("after")
            time.sleep(10)
            load.stop()
            started = time.monotonic()
            try:
                wait_for(lambda: stored(dsn, run)[0] >= len(load.sent), timeout=120, what="all")
                caught_up = f"{time.monotonic() - started:.1f} s"
            except AssertionError:  # still print what was lost
                caught_up = "not within 120 s"
        chats, distinct, errors = stored(dsn, run)
    print(f"outage {args.outage:.0f} s at {args.rate:.0f} chats/s")
    print(f"  chats sent      {len(load.sent)}  (failed requests: {len(load.failures)})")
    print(
        f"  rows stored     {chats}  ({distinct} distinct chats, {errors} error rows, "
        f"{load.expected_errors()} expected)"
    )
    print(f"  lost            {len(load.sent) - distinct}")
    print(f"  duplicated      {chats - distinct}")
    print(f"  all stored {caught_up} after the load stopped")
    for phase in load.phases[1:]:
        print(
            f"  p99 {phase.name:<7} {phase.p99_ms():6.1f} ms   (p50 {phase.p50_ms():.1f} ms, "
            f"{len(phase.latencies)} requests)"
        )
    during, before = load.phases[2].p99_ms(), load.phases[1].p99_ms()
    print(f"  p99 during / before = {during / before:.2f}x   (target <= 1.2)")


if __name__ == "__main__":
    main()
