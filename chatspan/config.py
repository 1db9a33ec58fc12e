"""Settings from environment variables, validated once, with errors that name the variable.

The OpenTelemetry SDK builds exporters with no arguments, so the environment is the
configuration. Every reader here fails with a :class:`ConfigError` whose message says
which variable is wrong, what it holds and what it should hold.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_DATABASE_URL = "sqlite:///chatspan.db"

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
