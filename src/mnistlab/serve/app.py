"""`create_app`: the pages, their static files, the suite reports and the API in one Starlette app.

Pages are static HTML shipped in `static/` (no CDN: the app works offline); their scripts fetch
the API. Every response carries a Content-Security-Policy that allows only the app's own files,
and, when the server listens on loopback only, the Host header must name a loopback address (a
web page elsewhere cannot reach the app by rebinding a DNS name to 127.0.0.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mnistlab.serve.api import ServeState, api_routes
from mnistlab.serve.draw import PredictorCache
from mnistlab.serve.examples import TestImages
from mnistlab.serve.index import RunIndex

__all__ = ["create_app", "STATIC", "LOOPBACK_HOSTS"]

STATIC = Path(__file__).resolve().parent / "static"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
PAGE_POLICY = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
# A report is one self-contained file (inline styles, images as data: URLs), shown sandboxed.
REPORT_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox"
PAGES = {"/": "runs.js", "/compare": "compare.js", "/draw": "draw.js"}
# Every page is the same shell (static/page.html) with its own script, which builds the page.
SHELL = (STATIC / "page.html").read_text(encoding="utf-8")


def _page(script: str):
    html = SHELL.replace("{script}", script)

    async def handler(request: Request) -> Response:
        return HTMLResponse(html)

    return handler


# the run page reads its run name from the URL and asks the API, which looks it up
_run_page = _page("run.js")


async def _report(request: Request) -> Response:
    """A suite report by its number in /api/reports (never a path from the URL)."""
    reports = request.app.state.serve.reports
    text = request.path_params["number"]
    if not (text.isascii() and text.isdigit() and int(text) < len(reports)):
        return JSONResponse({"error": "no such report; GET /api/reports lists them"}, 404)
    folder = reports[int(text)]
    html = folder / "report.html"
    if not html.is_file():
        return JSONResponse({"error": f"{html}: missing"}, 404)
    return HTMLResponse(html.read_bytes(), headers={"Content-Security-Policy": REPORT_POLICY})


class _SecurityHeaders:
    """Pages may load only the app's own files; nothing is sniffed or framed."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", PAGE_POLICY.encode()))
                headers += [(b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"no-referrer")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(runs_dir: str | Path, reports: Sequence[str | Path] = (),
               data_dir: str | Path | None = None, allowed_hosts: Sequence[str] | None = None,
               torch_threads: int | None = None) -> Starlette:
    """The web app over `runs_dir` (read-only).

    Args:
        reports: folders holding a `report.html` (`mnistlab report -o DIR`), shown in the app.
        data_dir: where the test images of the confusion-matrix cells are found.
        allowed_hosts: Host headers accepted (None: any); loopback names when serving locally.
        torch_threads: threads for predictions (1 keeps a training run beside it at speed).
    """
    routes = [Route(path, _page(name)) for path, name in PAGES.items()]
    routes += [Route("/run/{name}", _run_page), Route("/reports/{number}", _report),
               *api_routes(), Mount("/static", StaticFiles(directory=STATIC), name="static")]
    middleware = [Middleware(_SecurityHeaders)]
    if allowed_hosts is not None:
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    app = Starlette(routes=routes, middleware=middleware)
    app.state.serve = ServeState(RunIndex(runs_dir), [Path(r) for r in reports],
                                 TestImages(data_dir), PredictorCache(threads=torch_threads))
    return app
