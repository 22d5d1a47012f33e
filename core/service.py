"""The worker's HTTP face: /healthz, /metrics (Prometheus), and the routes that
connectors add (WeChat callbacks, Open311)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

# (method, path prefix) → handler(request) → (status, content type, body)
Handler = Callable[["Request"], tuple[int, str, bytes]]


class Request:
    def __init__(self, method: str, path: str, query: str, headers, body: bytes, client: str):
        self.method, self.path, self.query, self.headers, self.body, self.client = (
            method, path, query, headers, body, client)


class Service:
    def __init__(self, host: str, port: int, name: str):
        self.host, self.port, self.name = host, port, name
        self.routes: list[tuple[str, str, Handler]] = []
        self.health: Callable[[], dict] = lambda: {}
        self.server: ThreadingHTTPServer | None = None
        self.add("GET", "/healthz", self._healthz)
        self.add("GET", "/metrics", lambda req: (200, CONTENT_TYPE_LATEST, generate_latest()))

    def add(self, method: str, prefix: str, handler: Handler) -> None:
        self.routes.append((method, prefix, handler))

    def _healthz(self, req: Request):
        details = self.health()
        ok = details.pop("ok", True)
        body = json.dumps({"status": "ok" if ok else "degraded", "stage": self.name, **details}, ensure_ascii=False)
        return (200 if ok else 503), "application/json; charset=utf-8", body.encode()

    def start(self) -> Service:
        service = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _dispatch(self):
                path, _, query = self.path.partition("?")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                for method, prefix, handler in service.routes:
                    if self.command == method and (path == prefix or path.startswith(prefix.rstrip("/") + "/")):
                        try:
                            status, ctype, out = handler(Request(self.command, path, query, self.headers, body, self.client_address[0]))
                        except Exception:
                            log.exception("HTTP handler failed", extra={"path": path})
                            status, ctype, out = 500, "text/plain; charset=utf-8", b"internal error"
                        break
                else:
                    status, ctype, out = 404, "text/plain; charset=utf-8", b"not found"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = _dispatch

            def log_message(self, fmt, *args):  # access logs stay quiet; errors are logged above
                pass

        class Server(ThreadingHTTPServer):
            # socketserver's default listen backlog is 5: a burst of WeChat pushes from more
            # connections than that was reset (measured by benchmarks/ingest_wechat.py).
            request_queue_size = 256

        self.server = Server((self.host, self.port), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, name=f"http-{self.name}", daemon=True).start()
        log.info("serving /healthz and /metrics", extra={"stage": self.name, "port": self.port})
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
