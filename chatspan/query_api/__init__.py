"""The admin query service: a FastAPI app over chatspan's tables."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine, exc, text

from chatspan.config import AlertSettings, ApiSettings, SpoolSettings
from chatspan.exporters.spool import status as spool_status
from chatspan.query_api.alerts import Alerter
from chatspan.query_api.ingest import router as ingest_router
from chatspan.query_api.models import Health
from chatspan.query_api.routes import router
from chatspan.store.engine import describe_error, make_engine
from chatspan.store.migrate import SchemaGate
from chatspan.store.writer import RecordWriter

_logger = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


def create_app(
    settings: ApiSettings | None = None,
    *,
    engine: Engine | None = None,
    insecure: bool = False,
    alerts: AlertSettings | None = None,
) -> FastAPI:
    """The query service. `insecure` lets every request in as an admin (local use only)."""
    settings = settings or ApiSettings.from_env()
    alerts = alerts if alerts is not None else AlertSettings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        watcher = None
        if alerts.webhook_url:
            app.state.alerter = Alerter(app.state.engine, alerts)
            watcher = asyncio.create_task(_watch(app.state.alerter, alerts.interval_s))
        yield
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    app = FastAPI(
        title="chatspan",
        summary="Chats and errors recorded from an LLM chat app, for its admins.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine or make_engine(
        settings.database_url, timeout_s=settings.query_timeout_s, pool_size=8
    )
    app.state.insecure = insecure
    app.state.writer = RecordWriter(app.state.engine)
    app.state.schema = SchemaGate(app.state.engine, enabled=settings.auto_migrate)
    app.include_router(router)
    app.include_router(ingest_router)
    # The admin page: static files, signed in with an admin key held in the browser tab.
    app.mount("/console/admin", StaticFiles(directory=STATIC, html=True), name="admin-page")

    @app.get("/healthz", response_model=Health, tags=["service"])
    def healthz(request: Request) -> JSONResponse:
        """Whether the database answers, and what waits in the spool."""
        spool = spool_status(SpoolSettings.from_env())
        try:
            with request.app.state.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except exc.SQLAlchemyError as error:
            _logger.warning(
                "chatspan: health check: database unreachable: %s", describe_error(error)
            )
            return JSONResponse(
                {"status": "unavailable", "database": "unreachable", "spool": spool},
                status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            )
        return JSONResponse({"status": "ok", "database": "reachable", "spool": spool})

    @app.exception_handler(exc.OperationalError)
    @app.exception_handler(exc.InterfaceError)
    @app.exception_handler(exc.TimeoutError)
    def database_unavailable(_request: Request, error: Exception) -> JSONResponse:
        _logger.warning("chatspan: database unavailable: %s", describe_error(error))
        return JSONResponse(
            {"detail": "the database is unavailable; try again shortly"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )

    return app


async def _watch(alerter: Alerter, interval_s: float) -> None:
    """Check the alert rules forever; a failed check is logged, and the next one runs."""
    while True:
        try:
            await run_in_threadpool(alerter.check)
        except Exception as failure:
            _logger.warning("chatspan: the alert check failed: %s", describe_error(failure))
        await asyncio.sleep(interval_s)
