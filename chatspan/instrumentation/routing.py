"""Which HTTP routes carry a chat, and in which shape.

A :class:`ChatRoute` pairs a method and path pattern with the operation it serves and
the shape its traffic has. The built-in routes are Dify's (service API, console
debugger, web app) and the OpenAI-compatible ``/v1/chat/completions``; an operator adds
routes in ``CHATSPAN_CHAT_ROUTES``, read by :func:`read_custom_routes`.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chatspan import semconv as sc
from chatspan.config import ConfigError
from chatspan.instrumentation.shapes.base import Shape
from chatspan.instrumentation.shapes.custom import CustomShape
from chatspan.instrumentation.shapes.dify import DIFY, DIFY_CONSOLE, DIFY_WEB_APP
from chatspan.instrumentation.shapes.openai import OPENAI

_logger = logging.getLogger(__name__)

CHAT, COMPLETION, WORKFLOW = (
    sc.OPERATION_CHAT,
    sc.OPERATION_TEXT_COMPLETION,
    sc.OPERATION_INVOKE_WORKFLOW,
)


@dataclass(frozen=True)
class ChatRoute:
    """A method and path pattern (``<name>`` captures a segment) that carries a chat."""

    method: str
    path: str
    operation: str
    shape: Shape

    def regex(self) -> re.Pattern[str]:
        pattern = re.sub(r"<(?:[a-z]+:)?([A-Za-z_][A-Za-z0-9_]*)>", r"(?P<\1>[^/]+)", self.path)
        return re.compile(f"^{pattern}/?$")


def dify_routes() -> list[ChatRoute]:
    """Dify's chat routes: service API, console debugger and published web app."""
    routes = []
    for prefix, shape in (
        ("/v1", DIFY),
        ("/api", DIFY_WEB_APP),
        ("/console/api/apps/<app_id>", DIFY_CONSOLE),
    ):
        routes += [
            ChatRoute("POST", f"{prefix}/chat-messages", CHAT, shape),
            ChatRoute("POST", f"{prefix}/completion-messages", COMPLETION, shape),
        ]
    routes += [
        ChatRoute("POST", "/v1/workflows/run", WORKFLOW, DIFY),
        ChatRoute("POST", "/api/workflows/run", WORKFLOW, DIFY_WEB_APP),
    ]
    return routes


def openai_routes() -> list[ChatRoute]:
    return [ChatRoute("POST", "/v1/chat/completions", CHAT, OPENAI)]


@dataclass(frozen=True)
class RouteMatch:
    route: ChatRoute
    params: dict[str, str]


class Router:
    """Finds the chat route of a request: a dict lookup for fixed paths, then patterns."""

    def __init__(self, routes: Iterable[ChatRoute]) -> None:
        self._fixed: dict[tuple[str, str], ChatRoute] = {}
        self._patterns: list[tuple[str, re.Pattern[str], ChatRoute]] = []
        for route in routes:
            if "<" in route.path:
                self._patterns.append((route.method, route.regex(), route))
            else:
                self._fixed[(route.method, route.path.rstrip("/") or "/")] = route
        self._methods = {route.method for route in self._fixed.values()} | {
            method for method, _, _ in self._patterns
        }

    def match(self, method: str, path: str) -> RouteMatch | None:
        if method not in self._methods:
            return None
        route = self._fixed.get((method, path.rstrip("/") or "/"))
        if route is not None:
            return RouteMatch(route, {})
        for route_method, regex, route in self._patterns:
            if route_method == method and (found := regex.match(path)):
                return RouteMatch(route, found.groupdict())
        return None


# -- CHATSPAN_CHAT_ROUTES -----------------------------------------------------------------


def read_custom_routes(
    raw: str, variable: str = "CHATSPAN_CHAT_ROUTES"
) -> tuple[list[ChatRoute], list[str]]:
    """Parse the JSON list of custom chat routes: the routes understood, and what is
    wrong with the others (each naming `variable`). A route that is not understood is
    skipped, never the others: a typo must not stop chats being recorded."""
    if not raw.strip():
        return [], []
    try:
        specs = json.loads(raw)
    except ValueError as error:
        return [], [f"{variable} must be a JSON list of route objects: {error}; {_ALL_SKIPPED}"]
    if not isinstance(specs, list):
        return [], [f"{variable} must be a JSON list of route objects; {_ALL_SKIPPED}"]
    routes, problems, old_keys = [], [], []
    for index, spec in enumerate(specs):
        try:
            routes.append(_custom_route(spec, index, variable))
        except ConfigError as error:
            problems.append(f"{error}; this route is skipped, the others are recorded")
        if isinstance(spec, Mapping) and _OLD_SHAPE_KEY in spec:
            old_keys.append(f"{variable}[{index}]")
    if old_keys:
        _warn_once(
            f'{", ".join(old_keys)}: the key "{_OLD_SHAPE_KEY}" is now named "{_SHAPE_KEY}"; '
            f'"{_OLD_SHAPE_KEY}" is still read, rename it to "{_SHAPE_KEY}"'
        )
    return routes, problems


_ALL_SKIPPED = "every custom route is skipped; the built-in routes are recorded"
_SHAPE_KEY, _OLD_SHAPE_KEY = "shape", "format"  # "format" until the concept had one name
_BUILT_IN_SHAPES: dict[str, Shape] = {"dify": DIFY, "openai": OPENAI}
_PATH_KEYS = {f.name for f in dataclasses.fields(CustomShape)}  # its paths, and "extractor"
_ROUTE_KEYS = {"method", "path", "operation", _SHAPE_KEY, _OLD_SHAPE_KEY}
_warned: set[str] = set()


def _custom_route(spec: Any, index: int, variable: str) -> ChatRoute:
    where = f"{variable}[{index}]"
    if not isinstance(spec, Mapping) or not isinstance(spec.get("path"), str):
        raise ConfigError(f'{where} must be an object with at least a "path"')
    unknown = set(spec) - _ROUTE_KEYS - _PATH_KEYS
    if unknown:
        known = sorted(_ROUTE_KEYS - {_OLD_SHAPE_KEY} | _PATH_KEYS)
        raise ConfigError(f"{where} has unknown keys {sorted(unknown)}; known keys: {known}")
    operation = spec.get("operation", CHAT)
    if operation not in (CHAT, COMPLETION, WORKFLOW):
        raise ConfigError(
            f"{where}: operation must be one of chat, text_completion, invoke_workflow"
        )
    key = _SHAPE_KEY if _SHAPE_KEY in spec else _OLD_SHAPE_KEY
    name = spec.get(key)
    if name is not None:
        if name not in _BUILT_IN_SHAPES:
            raise ConfigError(f'{where}: {key} must be "dify" or "openai", got {name!r}')
        shape = _BUILT_IN_SHAPES[name]
    else:
        fields = {k: spec[k] for k in _PATH_KEYS if k in spec}
        if "extractor" in fields:
            fields["extractor"] = _load_callable(fields["extractor"], where)
        shape = CustomShape(**fields)
    return ChatRoute(str(spec.get("method", "POST")).upper(), spec["path"], operation, shape)


def _load_callable(reference: Any, where: str) -> Callable[[Mapping[str, Any]], Mapping[str, Any]]:
    if not isinstance(reference, str) or ":" not in reference:
        raise ConfigError(f'{where}: extractor must be "package.module:function"')
    module_name, _, attribute = reference.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"{where}: cannot load extractor {reference!r}: {error}") from None
    if not callable(function):
        raise ConfigError(f"{where}: extractor {reference!r} is not callable")
    return function


def _warn_once(message: str) -> None:
    """A setting that still works but should change: said once per process, however
    often the settings are read (a health check reads them on every call)."""
    if message not in _warned:
        _warned.add(message)
        _logger.warning("chatspan: %s", message)
