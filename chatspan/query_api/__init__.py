"""The admin query service: a FastAPI app over chatspan's tables."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine, exc, text

from chatspan.config import ApiSettings, SpoolSettings
from chatspan.exporters.spool import status as spool_status
from chatspan.query_api.ingest import router as ingest_router
from chatspan.query_api.models import Health
from chatspan.query_api.routes import router
from chatspan.store.engine import describe_error, make_engine
from chatspan.store.migrate import SchemaGate
from chatspan.store.writer import RecordWriter

_logger = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


def create_app(
    settings: ApiSettings | None = None, *, engine: Engine | None = None, insecure: bool = False
) -> FastAPI:
    """The query service. `insecure` lets every request in as an admin (local use only)."""
    settings = settings or ApiSettings.from_env()
    app = FastAPI(
        title="chatspan",
        summary="Chats and errors recorded from an LLM chat app, for its admins.",
        version="0.1.0",
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
