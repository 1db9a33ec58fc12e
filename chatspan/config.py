"""Settings from environment variables, validated once, with errors that name the variable.

The OpenTelemetry SDK builds exporters with no arguments, so the environment is the
configuration. Every reader here fails with a :class:`ConfigError` whose message says
which variable is wrong, what it holds and what it should hold.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

DEFAULT_DATABASE_URL = "sqlite:///chatspan.db"
_T = TypeVar("_T")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def env_str(name: str, default: str, environ: Mapping[str, str] | None = None) -> str:
    value = (environ if environ is not None else os.environ).get(name, "").strip()
    return value or default


def env_bool(name: str, default: bool, environ: Mapping[str, str] | None = None) -> bool:
    raw = (environ if environ is not None else os.environ).get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def env_float(
    name: str,
    default: float,
    *,
    minimum: float = 0.0,
    environ: Mapping[str, str] | None = None,
) -> float:
    raw = (environ if environ is not None else os.environ).get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not value > minimum:
        raise ConfigError(f"{name} must be greater than {minimum:g}, got {raw!r}")
    return value


def env_count(name: str, default: int, environ: Mapping[str, str] | None = None) -> int:
    """A whole number of at least 1."""
    raw = (environ if environ is not None else os.environ).get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{name} must be a whole number of at least 1, got {raw!r}")
    return int(raw)


def env_list(name: str, environ: Mapping[str, str] | None = None) -> list[str]:
    raw = (environ if environ is not None else os.environ).get(name, "")
    return [item.strip() for item in raw.split(",") if item.strip()]


@dataclass(frozen=True)
class StoreSettings:
    """Where rows go and how long one export may take."""

    database_url: str = DEFAULT_DATABASE_URL
    export_timeout_s: float = 10.0
    auto_migrate: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StoreSettings:
        return cls(
            database_url=env_str("CHATSPAN_DATABASE_URL", DEFAULT_DATABASE_URL, environ),
            export_timeout_s=env_float("CHATSPAN_EXPORT_TIMEOUT_S", 10.0, environ=environ),
            auto_migrate=env_bool("CHATSPAN_AUTO_MIGRATE", True, environ),
        )


DEFAULT_MAX_CONTENT_CHARS = 65_536
DEFAULT_MAX_REQUEST_BYTES = 1_048_576


@dataclass(frozen=True)
class CaptureSettings:
    """What the instrumentation may put on a span, and how much of it.

    Read leniently, unlike the other settings: a typo here must not switch chat
    recording off. A value that is not understood falls back to the safer choice
    (no content captured, redaction on, the documented size caps), and ``problems``
    says which variable was skipped, why, and what chatspan does instead.
    """

    capture_content: bool = True
    redact: bool = True
    redact_patterns: tuple[str, ...] = ()
    max_content_chars: int = DEFAULT_MAX_CONTENT_CHARS
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    problems: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CaptureSettings:
        env = environ if environ is not None else os.environ
        problems: list[str] = []

        def read(reader: Callable[[], _T], fallback: _T, instead: str) -> _T:
            try:
                return reader()
            except ConfigError as error:
                problems.append(f"{error}; {instead}")
                return fallback

        patterns, bad_patterns = _patterns("CHATSPAN_REDACT_PATTERNS", env)
        problems += [
            f"{bad}; {_NO_CONTENT}: it would keep what that pattern masks" for bad in bad_patterns
        ]
        # A switch that is not understood was most likely meant to turn capture off (the
        # default is on), and off is the choice that cannot leak what was meant to stay out.
        capture = read(lambda: _capture_content(env), False, _NO_CONTENT)
        return cls(
            capture_content=capture and not bad_patterns,
            redact=read(
                lambda: env_bool("CHATSPAN_REDACT", True, env), True, "the built-in rules stay on"
            ),
            redact_patterns=patterns,
            max_content_chars=read(
                lambda: int(
                    env_float("CHATSPAN_MAX_CONTENT_CHARS", DEFAULT_MAX_CONTENT_CHARS, environ=env)
                ),
                DEFAULT_MAX_CONTENT_CHARS,
                f"using the default, {DEFAULT_MAX_CONTENT_CHARS}",
            ),
            max_request_bytes=read(
                lambda: int(
                    env_float("CHATSPAN_MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES, environ=env)
                ),
                DEFAULT_MAX_REQUEST_BYTES,
                f"using the default, {DEFAULT_MAX_REQUEST_BYTES}",
            ),
            problems=tuple(problems),
        )


_NO_CONTENT = "chat content is not captured until it is fixed (chats are still recorded)"


def _capture_content(env: Mapping[str, str]) -> bool:
    """chatspan's own switch wins; else OpenTelemetry's GenAI one; else on.

    OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT takes ``true`` / ``false`` and, in
    newer conventions, ``SPAN_ONLY``, ``EVENT_ONLY``, ``SPAN_AND_EVENT`` or ``NO_CONTENT``.
    """
    if env.get("CHATSPAN_CAPTURE_CONTENT", "").strip():
        return env_bool("CHATSPAN_CAPTURE_CONTENT", True, env)
    name = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
    raw = env.get(name, "").strip().lower()
    if not raw:
        return True
    if raw in {"span_only", "span_and_event", "event_only"}:
        return raw != "event_only"  # chatspan reads spans, not events
    if raw == "no_content":
        return False
    return env_bool(name, True, env)


def _patterns(name: str, env: Mapping[str, str]) -> tuple[tuple[str, ...], list[str]]:
    """A JSON list of regular expressions, or a single one: those that compile, and
    what is wrong with the others."""
    raw = env.get(name, "").strip()
    if not raw:
        return (), []
    if raw.startswith("["):
        try:
            patterns = json.loads(raw)
        except ValueError as error:
            return (), [f"{name} looks like a JSON list but is not JSON: {error}"]
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            return (), [f"{name} must be a JSON list of regular expressions (strings)"]
    else:
        patterns = [raw]
    good, bad = [], []
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as error:
            bad.append(f"{name}: {pattern!r} is not a regular expression: {error}")
        else:
            good.append(pattern)
    return tuple(good), bad


MIN_ADMIN_KEY_CHARS = 16
MIN_JWT_SECRET_BYTES = 32  # HS256's own key size: shorter secrets can be guessed offline
# Secrets published as samples, by SHA-256 (the repository holds no key-shaped strings):
# a token signed with one proves nothing.
_SAMPLE_SECRETS = {
    "0f44b34c6311bcb547867d393c1c56e6564e03d905fdd023637f549358bf3670": (
        "the sample SECRET_KEY of Dify's docker/.env.example"
    ),
}


@dataclass(frozen=True)
class ApiSettings:
    """The query service: its database, who may read, and where traces are viewed."""

    database_url: str = DEFAULT_DATABASE_URL
    query_timeout_s: float = 30.0
    admin_api_keys: tuple[str, ...] = ()
    jwt_secret: str | None = None
    jwt_user_claim: str | None = None
    jwt_audience: str | None = None  # checked (and required) when set
    jwt_issuer: str | None = None  # checked (and required) when set
    trace_url_template: str | None = None
    ingest_api_keys: tuple[str, ...] = ()
    ingest_max_bytes: int = 16 * 1024 * 1024
    ingest_max_decompressed_bytes: int = 64 * 1024 * 1024
    ingest_max_concurrent: int = 4  # requests decoded at once; more are told to retry
    ingest_max_spans: int = 16_384  # per request
    ingest_max_attributes: int = 128  # per span, per event, per array or map value
    ingest_max_events: int = 128  # per span
    auto_migrate: bool = True

    def __post_init__(self) -> None:
        if self.jwt_secret is not None:  # however the settings are made
            _check_jwt_secret(self.jwt_secret)

    def __repr__(self) -> str:  # keys and secrets stay out of logs and tracebacks
        return (
            f"ApiSettings(database_url=<hidden>, admin_api_keys=<{len(self.admin_api_keys)} keys>, "
            f"ingest_api_keys=<{len(self.ingest_api_keys)} keys>, "
            f"jwt_secret={'<set>' if self.jwt_secret else None}, "
            f"trace_url_template={self.trace_url_template!r})"
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiSettings:
        env = environ if environ is not None else os.environ
        keys = _api_keys("CHATSPAN_ADMIN_API_KEYS", env)
        template = env_str("CHATSPAN_TRACE_URL_TEMPLATE", "", env) or None
        if template is not None and "{trace_id}" not in template:
            raise ConfigError(
                "CHATSPAN_TRACE_URL_TEMPLATE must contain {trace_id}, e.g. "
                "http://localhost:16686/trace/{trace_id}"
            )
        return cls(
            database_url=env_str("CHATSPAN_DATABASE_URL", DEFAULT_DATABASE_URL, env),
            query_timeout_s=env_float("CHATSPAN_QUERY_TIMEOUT_S", 30.0, environ=env),
            admin_api_keys=keys,
            jwt_secret=env_str("CHATSPAN_JWT_SECRET", "", env) or None,
            jwt_user_claim=env_str("CHATSPAN_JWT_USER_CLAIM", "", env) or None,
            jwt_audience=env_str("CHATSPAN_JWT_AUDIENCE", "", env) or None,
            jwt_issuer=env_str("CHATSPAN_JWT_ISSUER", "", env) or None,
            trace_url_template=template,
            ingest_api_keys=_api_keys("CHATSPAN_INGEST_API_KEYS", env),
            ingest_max_bytes=int(
                env_float("CHATSPAN_INGEST_MAX_BYTES", 16 * 1024 * 1024, environ=env)
            ),
            ingest_max_decompressed_bytes=int(
                env_float("CHATSPAN_INGEST_MAX_DECOMPRESSED_BYTES", 64 * 1024 * 1024, environ=env)
            ),
            ingest_max_concurrent=env_count("CHATSPAN_INGEST_MAX_CONCURRENT", 4, env),
            ingest_max_spans=env_count("CHATSPAN_INGEST_MAX_SPANS", 16_384, env),
            ingest_max_attributes=env_count("CHATSPAN_INGEST_MAX_ATTRIBUTES", 128, env),
            ingest_max_events=env_count("CHATSPAN_INGEST_MAX_EVENTS", 128, env),
            auto_migrate=env_bool("CHATSPAN_AUTO_MIGRATE", True, env),
        )


def _api_keys(name: str, env: Mapping[str, str]) -> tuple[str, ...]:
    keys = tuple(env_list(name, env))
    short = [k for k in keys if len(k) < MIN_ADMIN_KEY_CHARS]
    if short:
        raise ConfigError(
            f"{name} holds {len(short)} key(s) shorter than {MIN_ADMIN_KEY_CHARS} characters; "
            "use long random keys (python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return keys


def _check_jwt_secret(secret: str) -> None:
    """Refuse a user-token secret anyone could know or guess; never echoed."""
    name = "CHATSPAN_JWT_SECRET"
    sample = _SAMPLE_SECRETS.get(hashlib.sha256(secret.encode()).hexdigest())
    if sample is not None:
        raise ConfigError(
            f"{name} is {sample}, which anyone can read: tokens signed with it prove "
            "nothing. Give Dify's SECRET_KEY (and this setting) a new random value "
            "(openssl rand -base64 42)"
        )
    if len(secret.encode()) < MIN_JWT_SECRET_BYTES:
        raise ConfigError(
            f"{name} must be at least {MIN_JWT_SECRET_BYTES} bytes (it has "
            f"{len(secret.encode())}): a short HS256 secret can be guessed from one token; "
            "use a long random value (openssl rand -base64 42)"
        )


SUPABASE_TABLES = ("error", "dify_logs")


@dataclass(frozen=True)
class SupabaseSettings:
    """Where the Supabase exporter sends rows, with which key, and how long it may try."""

    url: str
    service_key: str
    tables: tuple[str, ...] = ("error",)
    request_timeout_s: float = 10.0
    export_timeout_s: float = 10.0
    batch_rows: int = 500

    def __repr__(self) -> str:  # the key stays out of logs and tracebacks
        return f"SupabaseSettings(url={self.url!r}, tables={self.tables!r}, service_key=<hidden>)"

    @property
    def key_is_jwt(self) -> bool:
        """A legacy service_role JWT (sent as apikey and bearer) or an sb_secret_ key."""
        return not self.service_key.startswith("sb_secret_")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SupabaseSettings:
        env = environ if environ is not None else os.environ
        url = env_str("SUPABASE_URL", "", env).rstrip("/")
        if not url.startswith(("https://", "http://")):
            raise ConfigError(
                "SUPABASE_URL must be your project's URL, e.g. https://abcdefgh.supabase.co "
                f"(got {url[:60]!r})"
                if url
                else "SUPABASE_URL is not set"
            )
        if url.startswith("http://") and not is_loopback(urlsplit(url).hostname):
            raise ConfigError(
                "SUPABASE_URL must use https://: over http:// the service_role key would "
                "cross the network in clear (http:// is accepted for this machine only: "
                "localhost, 127.0.0.1, ::1)"
            )
        key = env_str("SUPABASE_SERVICE_ROLE_KEY", "", env)
        _check_service_key(key)
        tables = tuple(env_list("CHATSPAN_SUPABASE_TABLES", env)) or ("error",)
        unknown = [t for t in tables if t not in SUPABASE_TABLES]
        if unknown:
            raise ConfigError(
                f"CHATSPAN_SUPABASE_TABLES lists {unknown}; it takes error and dify_logs"
            )
        return cls(
            url=url,
            service_key=key,
            tables=tables,
            request_timeout_s=env_float("CHATSPAN_SUPABASE_REQUEST_TIMEOUT_S", 10.0, environ=env),
            export_timeout_s=env_float("CHATSPAN_SUPABASE_EXPORT_TIMEOUT_S", 10.0, environ=env),
        )


def is_loopback(host: str | None) -> bool:
    """Whether `host` names this machine (localhost or a loopback address)."""
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_service_key(key: str) -> None:
    """The service_role key, legacy JWT or new secret key; never echoed in the error."""
    name = "SUPABASE_SERVICE_ROLE_KEY"
    if not key:
        raise ConfigError(f"{name} is not set; copy the service_role (secret) key of the project")
    if key.startswith("sb_publishable_"):
        raise ConfigError(f"{name} holds a publishable key; the exporter needs the secret key")
    if key.startswith("sb_secret_"):
        return
    role = _jwt_role(key)
    if role is None:
        raise ConfigError(f"{name} is neither a service_role JWT nor an sb_secret_ key")
    if role != "service_role":
        raise ConfigError(
            f"{name} is the project's {role} key; the exporter needs the service_role key"
        )


def _jwt_role(token: str) -> str | None:
    """The `role` claim of a JWT, read without verifying it (only to catch mix-ups)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    role = payload.get("role") if isinstance(payload, dict) else None
    return role if isinstance(role, str) else None


@dataclass(frozen=True)
class SpoolSettings:
    """Where exporters keep batches they could not deliver, and how much of them."""

    enabled: bool = True
    directory: str | None = None  # None: the default, see chatspan.exporters.spool
    max_bytes: int = 1024 * 1024 * 1024

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SpoolSettings:
        env = environ if environ is not None else os.environ
        return cls(
            enabled=env_bool("CHATSPAN_SPOOL", True, env),
            directory=env_str("CHATSPAN_SPOOL_DIR", "", env) or None,
            max_bytes=int(env_float("CHATSPAN_SPOOL_MAX_BYTES", 1024 * 1024 * 1024, environ=env)),
        )


@dataclass(frozen=True)
class AlertSettings:
    """When the query service posts to a webhook, and how often it may repeat itself."""

    webhook_url: str | None = None
    window_minutes: float = 5.0
    errors: int = 10  # errors in the window; 0 turns the rule off
    error_rate: float = 0.2  # share of chats with status error; 0 turns the rule off
    min_chats: int = 20  # the error rate needs at least this many chats in the window
    new_fingerprint: bool = True
    cooldown_minutes: float = 30.0
    interval_s: float = 60.0
    # Posts at most, the summary of the rest included: chat users can cause many errors.
    max_per_check: int = 5
    max_per_hour: int = 20

    def __repr__(self) -> str:  # a webhook URL is a secret (Slack's are)
        return f"AlertSettings(webhook_url={'<set>' if self.webhook_url else None}, ...)"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AlertSettings:
        env = environ if environ is not None else os.environ
        url = env_str("CHATSPAN_ALERT_WEBHOOK_URL", "", env) or None
        if url is not None and not url.startswith(("https://", "http://")):
            raise ConfigError("CHATSPAN_ALERT_WEBHOOK_URL must be an http(s) URL")
        return cls(
            webhook_url=url,
            window_minutes=env_float("CHATSPAN_ALERT_WINDOW_MINUTES", 5.0, environ=env),
            errors=int(env_float("CHATSPAN_ALERT_ERRORS", 10, minimum=-1, environ=env)),
            error_rate=env_float("CHATSPAN_ALERT_ERROR_RATE", 0.2, minimum=-1, environ=env),
            min_chats=int(env_float("CHATSPAN_ALERT_MIN_CHATS", 20, minimum=-1, environ=env)),
            new_fingerprint=env_bool("CHATSPAN_ALERT_NEW_FINGERPRINT", True, env),
            cooldown_minutes=env_float(
                "CHATSPAN_ALERT_COOLDOWN_MINUTES", 30.0, minimum=-1, environ=env
            ),
            interval_s=env_float("CHATSPAN_ALERT_INTERVAL_S", 60.0, environ=env),
            max_per_check=int(env_float("CHATSPAN_ALERT_MAX_PER_CHECK", 5, environ=env)),
            max_per_hour=int(env_float("CHATSPAN_ALERT_MAX_PER_HOUR", 20, environ=env)),
        )
