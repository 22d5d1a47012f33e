"""Fake upstreams for tests and demos: real HTTP servers on 127.0.0.1 that follow the real APIs."""

from __future__ import annotations

import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LocalServer:
    """What every fake shares: an HTTP server on an ephemeral loopback port, served
    from a daemon thread, that stops by itself after ``lifetime`` seconds (0: never),
    so a test that forgets to stop one leaves nothing behind. A context manager."""

    name = "fake"
    lifetime: float = 120.0
    server: ThreadingHTTPServer | None = None
    _timer: threading.Timer | None = None

    def start(self):
        raise NotImplementedError

    def _serve(self, handler: type[BaseHTTPRequestHandler]):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name=self.name, daemon=True).start()
        if self.lifetime:
            self._timer = threading.Timer(self.lifetime, self.stop)
            self._timer.daemon = True
            self._timer.start()
        return self

    @property
    def url(self) -> str:
        assert self.server is not None, "start() first"
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        server, self.server = self.server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class FaultQueue:
    """Faults that the next requests answer with, in order (each fake says which it knows).
    The fake sets ``_faults`` (a deque) and ``_lock``."""

    _faults: deque[int | str]
    _lock: threading.Lock | threading.RLock

    @property
    def faults_pending(self) -> int:
        """Faults queued by :meth:`fail` that no request has met yet."""
        with self._lock:
            return len(self._faults)

    def fail(self, *faults: int | str) -> None:
        with self._lock:
            self._faults.extend(faults)
