"""What Dify's api looks up before it answers a chat, and what it records about it.

Dify keeps its apps, their API keys, their web-app sites, end users, console accounts
and messages in its database (SQLAlchemy models on the tables ``apps``, ``api_tokens``,
``sites``, ``end_users``, ``accounts``, ``messages``). For each request its auth
decorators load the app and the end user behind the credential: the service API's app
key, the web app's passport (an HS256 JWT signed with the api's ``SECRET_KEY``, claims
``iss``, ``sub: "Web API Passport"``, ``app_id``, ``app_code``, ``end_user_id``), the
console's login token (claims ``user_id``, ``exp``, ``iss``, ``sub: "Console API
Passport"``). A chat app's answer then creates a message row naming the model.

The example apps do the same with an SQLite database (one file per machine, shared by
every worker, seeded with three apps), so that the instrumentation meets the objects it
meets inside Dify. Keys and the secret below are placeholders for the example only.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from typing import Any

import jwt
from sqlalchemy import String, create_engine, event, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, scoped_session, sessionmaker

SECRET_KEY = "example-only-secret-key-not-for-any-real-deployment"  # noqa: S105
EDITION = "SELF_HOSTED"
WEB_APP_PASSPORT = "Web API Passport"
CONSOLE_PASSPORT = "Console API Passport"

# The example's apps: (id, name, mode, API key, web-app site code). Placeholder keys.
APPS = [
    (
        "5d3c8f2e-7a41-4b6e-9c0d-1f2a3b4c5d6e",
        "Support Bot",
        "chat",
        "app-exampleKey0123456789abcdef",
        "support",
    ),
    (
        "8b1e4a7c-2d5f-4e9a-b3c6-7d8e9f0a1b2c",
        "Trip Planner",
        "advanced-chat",
        "app-exampleAdvancedKey01234567",
        "planner",
    ),
    (
        "c4f7a2d9-6e3b-4a1c-8d5e-0b9a8c7d6e5f",
        "Weather Flow",
        "workflow",
        "app-exampleWorkflowKey01234567",
        "weather",
    ),
]
ACCOUNT = ("e2d4c6b8-1a3f-4e5d-9c7b-6a5f4e3d2c1b", "admin@example.com", "example-password")
MODEL_PROVIDER, MODEL = "openai_api_compatible", "example-llm"  # what the chat app calls


class Base(DeclarativeBase):
    pass


class App(Base):
    __tablename__ = "apps"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str]
    mode: Mapped[str]


class ApiToken(Base):
    __tablename__ = "api_tokens"
    token: Mapped[str] = mapped_column(String, primary_key=True)
    app_id: Mapped[str]


class Site(Base):
    __tablename__ = "sites"
    code: Mapped[str] = mapped_column(String, primary_key=True)
    app_id: Mapped[str]


class EndUser(Base):
    __tablename__ = "end_users"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    app_id: Mapped[str]
    session_id: Mapped[str]
    type: Mapped[str]


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    email: Mapped[str]
    password: Mapped[str]


class Message(Base):
    __tablename__ = "messages"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    app_id: Mapped[str]
    conversation_id: Mapped[str]
    model_provider: Mapped[str | None]
    model_id: Mapped[str | None]
    query: Mapped[str]


def _database_url() -> str:
    path = os.environ.get("EXAMPLE_DIFY_DATABASE") or os.path.join(
        tempfile.gettempdir(), "chatspan-example-dify.db"
    )
    return f"sqlite:///{path}"


_engine = create_engine(_database_url(), connect_args={"timeout": 30, "check_same_thread": False})


@event.listens_for(_engine, "connect")
def _wal(connection: Any, _record: Any) -> None:
    connection.execute("PRAGMA journal_mode=WAL")


Session = scoped_session(sessionmaker(_engine, expire_on_commit=False))


def seed() -> None:
    """Create the tables and the example's apps, keys, sites and account (idempotent)."""
    Base.metadata.create_all(_engine)
    with Session() as session, session.begin():
        for app_id, name, mode, key, code in APPS:
            session.merge(App(id=app_id, name=name, mode=mode))
            session.merge(ApiToken(token=key, app_id=app_id))
            session.merge(Site(code=code, app_id=app_id))
        account_id, email, password = ACCOUNT
        session.merge(Account(id=account_id, email=email, password=password))
    Session.remove()


# -- what Dify's auth decorators load ---------------------------------------------------


def app_for_key(authorization: str | None) -> App | None:
    """The app behind a service-API key (Dify's validate_app_token)."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    session = Session()
    api_token = session.get(ApiToken, token.strip())
    return session.get(App, api_token.app_id) if api_token is not None else None


def end_user_for(app: App, session_id: str) -> EndUser:
    """The service API's end user named by the request's `user`, made on first use."""
    session = Session()
    found = session.scalars(
        select(EndUser).where(EndUser.app_id == app.id, EndUser.session_id == session_id)
    ).first()
    if found is None:
        found = EndUser(
            id=str(uuid.uuid4()), app_id=app.id, session_id=session_id, type="service_api"
        )
        session.add(found)
        session.commit()
    return found


def passport(site_code: str | None) -> str | None:
    """A web-app passport for a new anonymous end user of the site (GET /api/passport)."""
    session = Session()
    site = session.get(Site, site_code or "")
    if site is None:
        return None
    end_user = EndUser(
        id=str(uuid.uuid4()), app_id=site.app_id, session_id=str(uuid.uuid4()), type="browser"
    )
    session.add(end_user)
    session.commit()
    claims = {
        "iss": site.app_id,
        "sub": WEB_APP_PASSPORT,
        "app_id": site.app_id,
        "app_code": site.code,
        "end_user_id": end_user.id,
    }
    return jwt.encode(claims, SECRET_KEY, algorithm="HS256")


def web_app_user(authorization: str | None) -> tuple[App, EndUser] | None:
    """The app and end user of a web-app passport (Dify's validate_jwt_token)."""
    claims = _verified(authorization, WEB_APP_PASSPORT)
    if claims is None:
        return None
    session = Session()
    app = session.get(App, claims.get("app_id", ""))
    end_user = session.get(EndUser, claims.get("end_user_id", ""))
    if app is None or end_user is None or end_user.app_id != app.id:
        return None
    return app, end_user


def console_login(email: str, password: str) -> str | None:
    """A console login token (POST /console/api/login)."""
    session = Session()
    account = session.scalars(select(Account).where(Account.email == email)).first()
    if account is None or account.password != password:
        return None
    claims = {
        "user_id": account.id,
        "exp": int(time.time()) + 3600,
        "iss": EDITION,
        "sub": CONSOLE_PASSPORT,
    }
    return jwt.encode(claims, SECRET_KEY, algorithm="HS256")


def console_app(authorization: str | None, app_id: str) -> App | None:
    """The app of a console debugger request, for a signed-in account (Dify's
    login_required and get_app_model)."""
    claims = _verified(authorization, CONSOLE_PASSPORT)
    if claims is None:
        return None
    session = Session()
    if session.get(Account, claims.get("user_id", "")) is None:
        return None
    return session.get(App, app_id)


def record_message(app: App, conversation_id: str, query: str) -> None:
    """The message row a chat app's answer creates, naming its model (Dify's
    MessageBasedAppGenerator._init_generate_records)."""
    session = Session()
    session.add(
        Message(
            id=str(uuid.uuid4()),
            app_id=app.id,
            conversation_id=conversation_id,
            model_provider=MODEL_PROVIDER,
            model_id=MODEL,
            query=query,
        )
    )
    session.commit()


def finish_request() -> None:
    """Dify's request teardown: the request's session goes, with what it loaded."""
    Session.remove()


def _verified(authorization: str | None, subject: str) -> dict[str, Any] | None:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    try:
        claims = jwt.decode(token.strip(), SECRET_KEY, algorithms=["HS256"])
    except jwt.PyJWTError:
        return None
    return claims if claims.get("sub") == subject else None
