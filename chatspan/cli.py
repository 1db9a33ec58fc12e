"""The ``chatspan`` command: database migrations and the demo."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from chatspan.config import ConfigError, StoreSettings
from chatspan.store.engine import make_engine, safe_url
from chatspan.store.migrate import current_revision, upgrade


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return args.run(args)
    except ConfigError as error:
        print(f"chatspan: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatspan", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(required=True, metavar="ACTION")
    db_upgrade = db_commands.add_parser(
        "upgrade", help="create or migrate the tables in CHATSPAN_DATABASE_URL"
    )
    db_upgrade.set_defaults(run=_db_upgrade)

    demo = commands.add_parser(
        "demo", help="record sample chats and errors through the exporter and show them"
    )
    demo.set_defaults(run=_demo)
    return parser


def _db_upgrade(_args: argparse.Namespace) -> int:
    settings = StoreSettings.from_env()
    engine = make_engine(settings.database_url, timeout_s=settings.export_timeout_s)
    upgrade(engine)
    print(f"{safe_url(engine.url)} is at schema revision {current_revision(engine)}")
    return 0


def _demo(_args: argparse.Namespace) -> int:
    from chatspan.demo import run_demo  # noqa: PLC0415  (imports the SDK only when needed)

    return run_demo(StoreSettings.from_env())


if __name__ == "__main__":
    raise SystemExit(main())
