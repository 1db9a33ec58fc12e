"""The admin query service: a FastAPI app over chatspan's tables."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine, exc, text

from chatspan.config import AlertSettings, ApiSettings, SpoolSettings
from chatspan.exporters.spool import status as spool_status
from chatspan.instrumentation import settings_problems
from chatspan.query_api.alerts import Alerter
from chatspan.query_api.auth import bearer, principal
from chatspan.query_api.browser import BrowserGuard, add_docs_page
from chatspan.query_api.ingest import router as ingest_router
from chatspan.query_api.models import Health
from chatspan.query_api.routes import router
from chatspan.query_api.state import ServiceState, State, attach_state
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
    docs: bool = False,
) -> FastAPI:
    """The query service. `insecure` lets every request in as an admin (local use only,
    and only for loopback Host names); `docs` serves Swagger UI at /docs."""
    settings = settings or ApiSettings.from_env()
    alerts = alerts if alerts is not None else AlertSettings.from_env()
    engine = engine or make_engine(
        settings.database_url, timeout_s=settings.query_timeout_s, pool_size=8
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        watcher = None
        if alerts.webhook_url:
            alerter = Alerter(engine, alerts)
            watcher = asyncio.create_task(_watch(alerter, alerts.interval_s))
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
        docs_url=None,  # Swagger UI and ReDoc come from a CDN: /docs only when asked for
        redoc_url=None,
    )
    app.add_middleware(BrowserGuard, loopback_only=insecure)
    if docs:
        add_docs_page(app)
    attach_state(
        app,
        ServiceState(
            settings=settings,
            engine=engine,
            writer=RecordWriter(engine),
            schema=SchemaGate(engine, enabled=settings.auto_migrate),
            insecure=insecure,
            decode_slots=threading.BoundedSemaphore(settings.ingest_max_concurrent),
        ),
    )
    app.include_router(router)
    app.include_router(ingest_router)
    # The admin page: static files, signed in with an admin key held in the browser tab.
    app.mount("/console/admin", StaticFiles(directory=STATIC, html=True), name="admin-page")

    @app.get(
        "/healthz",
        response_model=Health,
        tags=["service"],
        responses={503: {"model": Health, "description": "the database does not answer"}},
    )
    def healthz(
        state: State,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> JSONResponse:
        """Whether the service is ok; with an admin key, also the database, the spool and
        the chat settings skipped as not understood (anyone else learns no paths, queue
        names or settings)."""
        try:
            with state.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            body, code = {"status": "ok", "database": "reachable"}, status.HTTP_200_OK
        except exc.SQLAlchemyError as error:
            _logger.warning(
                "chatspan: health check: database unreachable: %s", describe_error(error)
            )
            body = {"status": "unavailable", "database": "unreachable"}
            code = status.HTTP_503_SERVICE_UNAVAILABLE
        if not _is_admin(state, credentials):
            return JSONResponse({"status": body["status"]}, status_code=code)
        spool = spool_status(SpoolSettings.from_env())
        problems = settings_problems()
        return JSONResponse({**body, "spool": spool, "settings": problems}, status_code=code)

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


def _is_admin(state: ServiceState, credentials: HTTPAuthorizationCredentials | None) -> bool:
    try:
        return principal(state, credentials).is_admin
    except HTTPException:  # no credential, or not a valid one: a stranger
        return False


async def _watch(alerter: Alerter, interval_s: float) -> None:
    """Check the alert rules forever; a failed check is logged, and the next one runs."""
    while True:
        try:
            await run_in_threadpool(alerter.check)
        except Exception as failure:
            _logger.warning("chatspan: the alert check failed: %s", describe_error(failure))
        await asyncio.sleep(interval_s)
