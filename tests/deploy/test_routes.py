"""The route reader the probe tests rely on, on the aiohttp spellings it must understand."""

from __future__ import annotations

from pathlib import Path

from .routes import served_paths

SOURCE = """
from aiohttp import web
routes = web.RouteTableDef()

@routes.get("/status")
async def status(request): ...

def build(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_route("GET", "/readyz", readyz)
    app.add_routes([web.get("/metrics", metrics), web.static("/static", "static")])
    headers = {}
    headers.get("X-Not-A-Route")

class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/livez":
            ...
        elif self.path.split("?")[0] in ("/ping", "/pong"):
            ...
        if mode == "/not-a-path-compare":
            ...
"""


def test_reads_every_aiohttp_spelling(tmp_path: Path) -> None:
    (tmp_path / "web.py").write_text(SOURCE)
    assert served_paths(tmp_path) == {
        "/status",
        "/healthz",
        "/readyz",
        "/metrics",
        "/livez",
        "/ping",
        "/pong",
    }
