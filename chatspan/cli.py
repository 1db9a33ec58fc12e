"""The ``chatspan`` command: migrations, the query service and the demo."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import os
import re
import secrets
import stat
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TextIO

from chatspan.config import ApiSettings, ConfigError, StoreSettings, is_loopback
from chatspan.store.engine import describe_error, make_engine, safe_url
from chatspan.store.migrate import current_revision, upgrade


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
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
    search = db_commands.add_parser(
        "search-index",
        help="create or drop the PostgreSQL trigram indexes that make text search (q) fast",
    )
    search.add_argument("action", choices=["create", "drop"])
    search.set_defaults(run=_search_index)
    partition = db_commands.add_parser(
        "partition",
        help="PostgreSQL: partition both tables by month (once) and create coming months",
    )
    partition.add_argument("--months-ahead", type=int, default=3)
    partition.set_defaults(run=_partition)

    retention = commands.add_parser("retention", help="remove or redact rows older than an age")
    retention.add_argument(
        "--older-than", required=True, type=_age, help="e.g. 30d, 12h, 2w, 90min"
    )
    retention.add_argument("--table", choices=["dify_logs", "error"], help="default: both")
    retention.add_argument("--dry-run", action="store_true", help="only count")
    retention.add_argument(
        "--yes",
        action="store_true",
        help=f"go ahead when a table would lose more than {CONFIRM_SHARE:.0%} of its rows",
    )
    retention.add_argument(
        "--redact-content",
        action="store_true",
        help="keep the rows and their metrics, blank the chat text and error messages",
    )
    retention.set_defaults(run=_retention)

    export = commands.add_parser("export", help="write rows as CSV or JSON lines")
    export.add_argument("--table", choices=["dify_logs", "error"], default="dify_logs")
    export.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    export.add_argument(
        "--output", "-o", help="a file, readable by its owner only (default: standard output)"
    )
    export.add_argument("--since", type=_moment)
    export.add_argument("--until", type=_moment)
    for name in ("user-id", "app-id", "conversation-id", "status", "type-error", "node"):
        export.add_argument(f"--{name}")
    export.set_defaults(run=_export)

    serve = commands.add_parser("serve", help="serve the admin query API")
    _serving_options(serve, default_port=8000)
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="no authentication at all, for local development only: binds to loopback "
        "and answers only requests addressed to localhost, 127.0.0.1 or [::1]",
    )
    serve.add_argument(
        "--docs",
        action="store_true",
        help="serve the API docs (Swagger UI) at /docs; their script comes from a CDN",
    )
    serve.set_defaults(run=_serve)

    demo = commands.add_parser(
        "demo", help="record example traffic through the instrumentation, then serve the API"
    )
    _serving_options(demo, default_port=8765)
    demo.add_argument("--no-serve", action="store_true", help="print a summary and exit")
    demo.set_defaults(run=_demo)
    return parser


def _serving_options(parser: argparse.ArgumentParser, default_port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)


def _db_upgrade(_args: argparse.Namespace) -> int:
    settings = StoreSettings.from_env()
    engine = make_engine(settings.database_url, timeout_s=settings.export_timeout_s)
    upgrade(engine)
    print(f"{safe_url(engine.url)} is at schema revision {current_revision(engine)}")
    return 0


def _search_index(args: argparse.Namespace) -> int:
    from chatspan.store import search_index  # noqa: PLC0415

    settings = StoreSettings.from_env()
    engine = make_engine(settings.database_url, timeout_s=3600)
    getattr(search_index, args.action)(engine)
    print(f"text search indexes: {args.action} done on {safe_url(engine.url)}")
    return 0


def _partition(args: argparse.Namespace) -> int:
    from chatspan.store import partitions  # noqa: PLC0415

    settings = StoreSettings.from_env()
    engine = make_engine(settings.database_url, timeout_s=3600)
    upgrade(engine)
    converted = partitions.partition(engine)
    created = partitions.ensure_months(engine, args.months_ahead)
    print(
        f"partitioned now: {', '.join(converted) or 'none (already)'}; "
        f"new monthly partitions: {', '.join(created) or 'none needed'}"
    )
    return 0


# A real retention run that would delete (or redact) more than this share of a table
# asks for --yes: a mistyped age should not empty the tables.
CONFIRM_SHARE = 0.10


def _retention(args: argparse.Namespace) -> int:
    from chatspan.store import partitions, retention  # noqa: PLC0415

    settings = StoreSettings.from_env()
    engine = make_engine(settings.database_url, timeout_s=3600)
    cutoff = datetime.now(timezone.utc) - args.older_than
    verb = "would " if args.dry_run else ""
    action = "redact" if args.redact_content else "delete"
    tables = [args.table] if args.table else ["dify_logs", "error"]
    if not args.dry_run and not args.yes:
        for table in tables:
            counted = retention.apply(
                engine, table, cutoff, dry_run=True, redact=args.redact_content
            )
            if counted.matched > CONFIRM_SHARE * counted.total:
                print(
                    f"chatspan: {table}: this would {action} {counted.matched:,} of "
                    f"{counted.total:,} rows ({counted.matched / counted.total:.0%}), more "
                    f"than {CONFIRM_SHARE:.0%} of the table: check --older-than (rows older "
                    f"than {cutoff:%Y-%m-%d %H:%M} UTC) and pass --yes to go ahead",
                    file=sys.stderr,
                )
                return 2
    for table in tables:
        result = retention.apply(
            engine,
            table,
            cutoff,
            dry_run=args.dry_run,
            redact=args.redact_content,
            progress=_progress_bar(f"{table}: {action}"),
        )
        months = (
            f", dropping partitions {', '.join(result.dropped_partitions)}"
            if result.dropped_partitions
            else ""
        )
        done = result.matched if args.dry_run else result.changed
        when = f"{cutoff:%Y-%m-%d %H:%M} UTC"
        print(f"{table}: {verb}{action} {done:,} row(s) older than {when}{months}")
    if engine.dialect.name == "postgresql" and not args.dry_run:
        partitions.ensure_months(engine)
    return 0


def _export(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

    from chatspan.store.export import ExportLines  # noqa: PLC0415
    from chatspan.store.queries import ChatFilters, ErrorFilters, Window  # noqa: PLC0415

    settings = StoreSettings.from_env()
    engine = make_engine(settings.database_url, timeout_s=3600)
    window = Window(args.since, args.until)
    if args.table == "dify_logs":
        filters = ChatFilters(window, args.user_id, args.app_id, args.conversation_id, args.status)
    else:
        filters = ErrorFilters(window, args.user_id, args.app_id, args.type_error, args.node)
    export = ExportLines(engine, filters, args.format)
    lines = iter(export)
    try:
        first = next(lines, "")  # the query runs before the output is created
    except SQLAlchemyError as error:
        print(f"chatspan: export failed: {describe_error(error)}", file=sys.stderr)
        return 1
    with _private_file(args.output) if args.output else contextlib.nullcontext(sys.stdout) as out:
        out.write(first)
        for chunk in lines:
            out.write(chunk)
    if export.incomplete:
        print(f"chatspan: {export.incomplete}", file=sys.stderr)
        return 1
    return 0


_AGE_UNITS = {"min": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_AGE = re.compile(r"(\d+)\s*(min|h|d|w)")


def _age(value: str) -> timedelta:
    """An age in units that cannot be misread: ``m`` (minutes or months?) is refused."""
    text = value.strip().lower()
    match = _AGE.fullmatch(text)
    if match is not None and int(match[1]) > 0:
        return timedelta(**{_AGE_UNITS[match[2]]: int(match[1])})
    if re.fullmatch(r"\d+\s*m", text):
        raise argparse.ArgumentTypeError(
            f"{value!r} is ambiguous (minutes or months?): write min for minutes "
            "(90min), or days for months (30d)"
        )
    raise argparse.ArgumentTypeError(
        f"{value!r}: use a number and min, h, d or w (e.g. 30d, 12h, 2w, 90min)"
    )


def _moment(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
        return (
            moment.astimezone(timezone.utc)
            if moment.tzinfo
            else moment.replace(tzinfo=timezone.utc)
        )
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO 8601 date or time") from None
    except OverflowError:
        raise argparse.ArgumentTypeError(f"{value!r} has no UTC equivalent") from None


def _private_file(path: str) -> TextIO:
    """`path` for writing, readable by its owner only (0600): exports hold chat text."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    if stat.S_ISREG(os.fstat(descriptor).st_mode):  # an existing file too, not a pipe
        os.fchmod(descriptor, 0o600)
    return os.fdopen(descriptor, "w", encoding="utf-8", newline="")


def _progress_bar(label: str, width: int = 30):
    """A one-line progress bar on standard error."""

    def show(done: int, total: int) -> None:
        share = done / total if total else 1.0
        filled = round(width * share)
        sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


# What each command needs beyond the base package: (extra, modules it brings).
_API = ("api", ("fastapi", "uvicorn", "jwt", "google.protobuf", "opentelemetry.proto", "httpx"))
_DEMO = ("demo", (*_API[1], "flask"))


def _require_extra(command: str, extra: str, modules: tuple[str, ...]) -> None:
    """One line naming the extra to install, rather than an ImportError's traceback."""
    missing = [name for name in modules if not _installed(name)]
    if missing:
        raise ConfigError(
            f"chatspan {command} needs the {extra!r} extra (missing: {', '.join(missing)}): "
            f"pip install 'chatspan[{extra}]'"
        )


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def _serve(args: argparse.Namespace) -> int:
    _require_extra("serve", *_API)
    settings = ApiSettings.from_env()
    if args.insecure and not is_loopback(args.host):
        raise ConfigError("--insecure serves without authentication: bind it to 127.0.0.1 only")
    if not args.insecure and not settings.admin_api_keys:
        raise ConfigError(
            "set CHATSPAN_ADMIN_API_KEYS (comma-separated admin keys) before serving, "
            "or pass --insecure for local development"
        )
    _run_api(settings, args.host, args.port, insecure=args.insecure, docs=args.docs)
    return 0


def _demo(args: argparse.Namespace) -> int:
    _require_extra("demo", *_DEMO)
    from chatspan.demo import print_summary, record_traffic  # noqa: PLC0415

    settings = ApiSettings.from_env()
    print(f"chatspan demo: recording example traffic into {safe_url(settings.database_url)}")
    chats, errors = record_traffic(settings.database_url)
    print(f"  recorded {chats} chats and {errors} errors")
    print_summary(settings.database_url)
    if args.no_serve:
        return 0
    key = secrets.token_urlsafe(24)
    settings = ApiSettings(**{**settings.__dict__, "admin_api_keys": (key,)})
    base = f"http://{args.host}:{args.port}/console/api/admin"
    auth = f'-H "Authorization: Bearer {key}"'
    print(f"\nThe admin API is at http://{args.host}:{args.port} (this run's admin key: {key})")
    for path in [
        "chat-logs?per_page=5",
        "chat-logs?user_id=alice",
        "users/bob/chat-history",
        "error-logs",
        "error-groups?sort=last_seen",
        "log-stats",
    ]:
        print(f"  curl -s {auth} '{base}/{path}'")
    print("Press Ctrl+C to stop.\n")
    _run_api(settings, args.host, args.port, insecure=False)
    return 0


def _run_api(
    settings: ApiSettings, host: str, port: int, *, insecure: bool, docs: bool = False
) -> None:
    import uvicorn  # noqa: PLC0415

    from chatspan.query_api import create_app  # noqa: PLC0415

    app = create_app(settings, insecure=insecure, docs=docs)
    uvicorn.run(app, host=host, port=port, log_level="info")


if __name__ == "__main__":
    raise SystemExit(main())
