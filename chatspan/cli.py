"""The ``chatspan`` command: migrations, the query service and the demo."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import secrets
import sys
from collections.abc import Sequence

from chatspan.config import ApiSettings, ConfigError, StoreSettings
from chatspan.store.engine import make_engine, safe_url
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

    serve = commands.add_parser("serve", help="serve the admin query API")
    _serving_options(serve, default_port=8000)
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="no authentication at all, for local development only (loopback hosts only)",
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


def _serve(args: argparse.Namespace) -> int:
    settings = ApiSettings.from_env()
    if args.insecure and not _is_loopback(args.host):
        raise ConfigError("--insecure serves without authentication: bind it to 127.0.0.1 only")
    if not args.insecure and not settings.admin_api_keys:
        raise ConfigError(
            "set CHATSPAN_ADMIN_API_KEYS (comma-separated admin keys) before serving, "
            "or pass --insecure for local development"
        )
    _run_api(settings, args.host, args.port, insecure=args.insecure)
    return 0


def _demo(args: argparse.Namespace) -> int:
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


def _run_api(settings: ApiSettings, host: str, port: int, *, insecure: bool) -> None:
    import uvicorn  # noqa: PLC0415

    from chatspan.query_api import create_app  # noqa: PLC0415

    uvicorn.run(create_app(settings, insecure=insecure), host=host, port=port, log_level="info")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


if __name__ == "__main__":
    raise SystemExit(main())
