"""What the query service shares between requests, built once by the app factory and
handed to routes through FastAPI dependencies."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from sqlalchemy import Engine

from chatspan.config import ApiSettings
from chatspan.store.migrate import SchemaGate
from chatspan.store.writer import RecordWriter


@dataclass(frozen=True)
class ServiceState:
    settings: ApiSettings
    engine: Engine
    writer: RecordWriter  # OTLP ingest's one writer
    schema: SchemaGate  # brings the tables up to date before ingest writes, when asked to
    insecure: bool  # every request is an admin's (`chatspan serve --insecure`)
    # OTLP requests decoded at once: a semaphore, so the cap holds across the thread pool
    decode_slots: threading.BoundedSemaphore


def attach_state(app: FastAPI, state: ServiceState) -> None:
    app.state.chatspan = state


def state_of(app: FastAPI) -> ServiceState:
    """The state the app factory attached to `app`."""
    state: ServiceState = app.state.chatspan
    return state


def service_state(request: Request) -> ServiceState:
    return state_of(request.app)


State = Annotated[ServiceState, Depends(service_state)]


def settings(state: State) -> ApiSettings:
    return state.settings


def engine(state: State) -> Engine:
    return state.engine


Settings = Annotated[ApiSettings, Depends(settings)]
DatabaseEngine = Annotated[Engine, Depends(engine)]
