"""The sink's read endpoint: POST /query on 127.0.0.1, so readers never open its store.

Request ``{"sql": "...", "params": {...}}``; answer ``{"columns": [...], "rows": [[...]]}``
or ``{"error": "..."}`` with status 400 (rejected or failed query). Bound to loopback
only; it runs read-only statements (``store.check_read_only``) in the sink's session.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .backends import Rows
from .errors import QueryFailed, TraceStoreError
from .store import Store, check_read_only

log = logging.getLogger("streams.tracestore.endpoint")
MAX_BODY = 1 << 20


class _Handler(BaseHTTPRequestHandler):
    store: Store  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)

    def _reply(self, status: int, doc: dict[str, object]) -> None:
        body = json.dumps(doc, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._reply(200, {"ok": True, "store": str(getattr(self.store.backend, "path", ""))})
        else:
            self._reply(404, {"error": "not found; POST /query"})

    def do_POST(self) -> None:
        if self.path != "/query":
            self._reply(404, {"error": "not found; POST /query"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._reply(413, {"error": f"query body over {MAX_BODY} bytes"})
            return
        try:
            req = json.loads(self.rfile.read(length) or b"{}")
            sql = check_read_only(str(req.get("sql", "")))
            params = req.get("params") or None
            columns, rows = self.store.query(sql, params)
        except (ValueError, AttributeError) as exc:
            self._reply(400, {"error": f"bad request: {exc}"})
            return
        except TraceStoreError as exc:
            self._reply(400, {"error": str(exc)})
            return
        self._reply(200, {"columns": columns, "rows": rows})


class QueryServer:
    def __init__(self, store: Store, host: str = "127.0.0.1", port: int = 0) -> None:
        handler = type("Handler", (_Handler,), {"store": store})
        self._srv = ThreadingHTTPServer((host, port), handler)
        self._srv.daemon_threads = True
        self._thread = threading.Thread(target=self._srv.serve_forever, name="trace-query", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._srv.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> QueryServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._srv.shutdown()
        self._srv.server_close()


def remote_query(
    url: str, sql: str, params: dict[str, object] | None = None, timeout_s: float = 30.0
) -> tuple[list[str], Rows]:
    """Ask a sink's endpoint; QueryFailed with its message, ConnectionError if it is gone."""
    body = json.dumps({"sql": sql, "params": params}).encode()
    req = urllib.request.Request(f"{url}/query", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            doc = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", str(exc))
        except ValueError:
            message = str(exc)
        raise QueryFailed(message) from None
    except (urllib.error.URLError, OSError) as exc:
        raise ConnectionError(f"trace sink at {url} did not answer: {exc}") from None
    return list(doc["columns"]), [tuple(r) for r in doc["rows"]]
