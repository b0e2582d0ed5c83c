"""The sink's read endpoint: POST /query on 127.0.0.1, so readers never open its store.

Request ``{"sql": "...", "params": {...}}`` with ``Authorization: Bearer <token>``; answer
``{"columns": [...], "rows": [[...]]}`` or ``{"error": "..."}`` with status 400 (rejected
or failed query), 401 (no token) or 403 (wrong token). The token is made at each sink start
and written only into the store's lock file (mode 0600), so only local readers running as
the store's user can find it. Statements run under ClickHouse's readonly=1 in a session of
their own (``Store.read``), never in the sink's writing session.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .backends import Rows
from .errors import QueryFailed, TraceStoreError
from .store import Store, check_read_only

log = logging.getLogger("tracestore.endpoint")
MAX_BODY = 1 << 20


class _Handler(BaseHTTPRequestHandler):
    store: Store  # set on the subclass made per server
    token: bytes

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

    def _authorized(self) -> bool:
        scheme, _, given = (self.headers.get("Authorization") or "").partition(" ")
        if scheme != "Bearer" or not given:
            self._reply(401, {"error": "a token is required (the sink's lock file has it)"})
            return False
        if not hmac.compare_digest(given.strip().encode(), self.token):
            self._reply(403, {"error": "wrong token"})
            return False
        return True

    def do_POST(self) -> None:
        if self.path != "/query":
            self._reply(404, {"error": "not found; POST /query"})
            return
        if not self._authorized():
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._reply(413, {"error": f"query body over {MAX_BODY} bytes"})
            return
        try:
            req = json.loads(self.rfile.read(length) or b"{}")
            sql = check_read_only(str(req.get("sql", "")))
            params = req.get("params") or None
            columns, rows = self.store.read(sql, params)
        except (ValueError, AttributeError) as exc:
            self._reply(400, {"error": f"bad request: {exc}"})
            return
        except TraceStoreError as exc:
            self._reply(400, {"error": str(exc)})
            return
        self._reply(200, {"columns": columns, "rows": rows})


class QueryServer:
    def __init__(self, store: Store, token: str, host: str = "127.0.0.1", port: int = 0) -> None:
        if not token:
            raise ValueError("the query endpoint needs a token")
        handler = type("Handler", (_Handler,), {"store": store, "token": token.encode()})
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


def new_token() -> str:
    return secrets.token_urlsafe(32)


def remote_query(
    url: str, sql: str, params: dict[str, object] | None = None, *, token: str | None,
    timeout_s: float = 30.0,
) -> tuple[list[str], Rows]:
    """Ask a sink's endpoint; QueryFailed with its message, ConnectionError if it is gone."""
    body = json.dumps({"sql": sql, "params": params}).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"{url}/query", body, headers)
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
