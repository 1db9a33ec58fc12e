"""What the service tells browsers, and which Host names it believes.

The admin page keeps an admin key in the browser tab's session storage, so every
response carries a strict Content-Security-Policy (scripts, styles and requests from
this origin only; no framing) and the usual companions. Redirects never name the Host a
request claimed: they are made relative. A server started with ``--insecure`` (no
authentication) answers only requests addressed to a loopback name, so that a web page
whose DNS name is rebound to 127.0.0.1 cannot read it.

The API docs page (Swagger UI) loads its script from a CDN, which FastAPI does not ship;
it is served only with ``chatspan serve --docs``, pinned to one release by Subresource
Integrity hashes, under a policy that allows nothing else from the CDN.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from urllib.parse import urlsplit, urlunsplit

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Nothing but this origin's own scripts, styles, images and requests; never in a frame.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})
# A host name, an IPv4 address or a bracketed IPv6 address, and a port: nothing that
# could change a URL's path or authority (a slash, an @, a space).
_HOST = re.compile(
    r"(?P<name>[a-z0-9._~%!$&'()*+,;=-]+|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?", re.IGNORECASE
)


class BrowserGuard:
    """ASGI middleware: security headers on every response, relative redirects, a Host
    header that is a host name, and with `loopback_only` a loopback one."""

    def __init__(self, app: ASGIApp, *, loopback_only: bool) -> None:
        self.app = app
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if "location" in headers:
                    headers["location"] = _relative(headers["location"])
            await send(message)

        refusal = self._refusal(Headers(scope=scope).get("host"))
        if refusal is not None:
            await JSONResponse({"detail": refusal}, status_code=400)(scope, receive, send_guarded)
            return
        await self.app(scope, receive, send_guarded)

    def _refusal(self, host: str | None) -> str | None:
        """Why a request's Host header is refused, or None."""
        if host is None:  # HTTP/1.0 may send none; nothing is built from it then
            return "a Host header is required" if self.loopback_only else None
        match = _HOST.fullmatch(host)
        if match is None:
            return "the Host header is not a host name"
        if self.loopback_only and match["name"].lower() not in LOOPBACK_HOSTS:
            return (
                "this server runs with --insecure and answers only loopback Host names "
                f"({', '.join(sorted(LOOPBACK_HOSTS))})"
            )
        return None


def _relative(location: str) -> str:
    """A redirect target without scheme and host: the service never redirects off-site,
    and the host Starlette would write is the one the request claimed."""
    parts = urlsplit(location)
    path = "/" + parts.path.lstrip("/")  # "//x" would name a host again
    return urlunsplit(("", "", path, parts.query, parts.fragment))


# swagger-ui-dist, one release, its files as published on npm (jsDelivr serves those
# bytes); a new release needs its new hashes: openssl dgst -sha384 -binary FILE | base64
SWAGGER_UI = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.35.0"
SWAGGER_UI_JS = (
    f"{SWAGGER_UI}/swagger-ui-bundle.js",
    "sha384-gjRm0bEPMeTmMh5jT2cHccIwCUZSTd8YC+j0d0sXw0MdGEfScduGpSyF3ZSSLkX9",
)
SWAGGER_UI_CSS = (
    f"{SWAGGER_UI}/swagger-ui.css",
    "sha384-WlYgdmXYOOBWL5apwjDEZwN+U3HmXSSu5R6V5aGxEcf7z+KuRNwBhoxKVN1i3D5I",
)
_DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{css}" integrity="{css_hash}" crossorigin="anonymous">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{js}" integrity="{js_hash}" crossorigin="anonymous"></script>
<script>{init}</script>
</body>
</html>
"""


def add_docs_page(app: FastAPI) -> None:
    """Serve Swagger UI at /docs (`chatspan serve --docs`)."""
    settings = {
        "url": app.openapi_url,
        "dom_id": "#swagger-ui",
        "layout": "BaseLayout",
        "deepLinking": True,
        "validatorUrl": None,  # no badge from validator.swagger.io
    }
    init = (
        f"SwaggerUIBundle(Object.assign({json.dumps(settings)}, "
        "{presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset]}));"
    )
    init_hash = base64.b64encode(hashlib.sha256(init.encode()).digest()).decode()
    page = _DOCS_PAGE.format(
        title=f"{app.title} API",
        css=SWAGGER_UI_CSS[0],
        css_hash=SWAGGER_UI_CSS[1],
        js=SWAGGER_UI_JS[0],
        js_hash=SWAGGER_UI_JS[1],
        init=init,
    )
    policy = (
        f"default-src 'none'; script-src {SWAGGER_UI_JS[0]} 'sha256-{init_hash}'; "
        f"style-src {SWAGGER_UI_CSS[0]}; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": policy})
