"""The worker's HTTP service against a real server on 127.0.0.1: each limit, shown with
small values so the tests are quick, from raw sockets where a client must misbehave."""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import threading
import time

import httpx
import pytest
from starlette.testclient import TestClient

import wenzheng.core.metrics  # noqa: F401 — registers the metrics /metrics shows
from wenzheng.app.workers import http_limits
from wenzheng.config.schema import HttpSettings
from wenzheng.core.service import Limits, Request, Route, Service

SMALL = Limits(max_body_bytes=1000, read_timeout_seconds=0.5, keepalive_seconds=1, handler_threads=4,
               rate_limit_per_minute=60, rate_limit_burst=3)


class Echo:
    """A handler that counts its calls and echoes the body."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, req: Request) -> tuple[int, str, bytes]:
        self.calls += 1
        return 200, "text/plain", req.body


@contextlib.contextmanager
def serve(limits: Limits = SMALL, *routes: Route, port: int = 0):
    service = Service("127.0.0.1", port, "test", limits)
    service.add(*routes)
    service.start()
    try:
        yield service
    finally:
        service.stop()


def raw(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` and read until the server closes (every refusal closes the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        return read_all(s)


def read_all(s: socket.socket) -> bytes:
    out = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := s.recv(65536):
            out += chunk
    return out


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def post_head(length: str | int, path: str = "/echo") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {length}\r\n\r\n".encode()


def test_an_oversized_content_length_is_refused_before_the_body_is_read():
    echo = Echo()
    with serve(SMALL, Route("/echo", echo, ("POST",))) as svc:
        started = time.monotonic()
        response = raw(svc.port, post_head(50_000_000))  # no body sent at all: the answer cannot wait for it
        assert status(response) == 413 and b"connection: close" in response.lower()
        assert time.monotonic() - started < 2 and echo.calls == 0
        assert status(raw(svc.port, post_head(5) + b"hello")) == 200 and echo.calls == 1


def test_a_negative_or_non_numeric_content_length_is_400():
    echo = Echo()
    with serve(SMALL, Route("/echo", echo, ("POST",))) as svc:
        for bad in ("-1", "12abc", "0x10"):
            assert status(raw(svc.port, post_head(bad) + b"x" * 16)) == 400, bad
    assert echo.calls == 0


@pytest.mark.parametrize("bad", ["-1", "abc", "1e3"])
def test_the_service_itself_refuses_a_bad_content_length(bad):
    """Whatever the HTTP parser in front lets through (here: none, the app called directly)."""
    echo = Echo()
    svc = Service("127.0.0.1", 0, "test", SMALL)
    svc.add(Route("/echo", echo, ("POST",)))
    with TestClient(svc.app, base_url="http://t") as client:
        response = client.post("/echo", content=b"hi", headers={"Content-Length": bad})
    assert response.status_code == 400 and echo.calls == 0


def test_a_slow_body_is_cut_by_the_read_timeout():
    echo = Echo()
    with serve(SMALL, Route("/echo", echo, ("POST",))) as svc:
        with socket.create_connection(("127.0.0.1", svc.port), timeout=5) as s:
            started = time.monotonic()
            s.sendall(post_head(100) + b"0123456789")  # 90 bytes short, never sent
            response = read_all(s)
        assert status(response) == 408 and time.monotonic() - started < SMALL.read_timeout_seconds + 1.5
    assert echo.calls == 0


def test_headers_trickled_a_byte_at_a_time_are_cut_too():
    with serve(SMALL) as svc, socket.create_connection(("127.0.0.1", svc.port), timeout=5) as s:
        started = time.monotonic()
        closed = False
        for byte in b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 100:
            try:
                s.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.05)  # keeps resetting uvicorn's idle timer: only the header deadline stops it
        closed = closed or read_all(s) == b""
        assert closed and time.monotonic() - started < SMALL.read_timeout_seconds + 1.5


def chunked(*chunks: bytes) -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    return b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + body


def test_a_chunked_body_is_counted_and_cut_at_the_limit():
    echo = Echo()
    with serve(SMALL, Route("/echo", echo, ("POST",))) as svc:
        ok = raw(svc.port, chunked(b"a" * 400, b"b" * 400))
        assert status(ok) == 200 and ok.endswith(b"a" * 400 + b"b" * 400)
        assert status(raw(svc.port, chunked(b"a" * 400, b"b" * 400, b"c" * 400))) == 413
    assert echo.calls == 1


def test_hundreds_of_idle_and_slow_connections_cost_no_threads():
    before = threading.active_count()
    with serve(SMALL, Route("/echo", Echo(), ("POST",))) as svc:
        conns = [socket.create_connection(("127.0.0.1", svc.port), timeout=5) for _ in range(300)]
        try:
            for i, c in enumerate(conns[::2]):  # half of them start a request and stall
                c.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n" if i % 2 else post_head(100) + b"x")
            time.sleep(0.2)
            with httpx.Client(base_url=f"http://127.0.0.1:{svc.port}", timeout=5) as client:
                assert client.get("/healthz").status_code == 200
            assert threading.active_count() <= before + 2  # the server's thread and one handler thread
            time.sleep(SMALL.read_timeout_seconds * 2 + SMALL.keepalive_seconds)
            answers = [read_all(c) for c in conns]  # a connection still open would time out here
            assert all(a == b"" or status(a) == 408 for a in answers)  # the server let go of every one
        finally:
            for c in conns:
                c.close()


def test_connections_beyond_max_concurrency_get_503_until_idle_ones_are_closed():
    limits = Limits(max_concurrency=20, read_timeout_seconds=0.5, keepalive_seconds=1)
    with serve(limits) as svc:
        idle = [socket.create_connection(("127.0.0.1", svc.port), timeout=5) for _ in range(30)]
        try:
            time.sleep(0.2)
            with httpx.Client(base_url=f"http://127.0.0.1:{svc.port}", timeout=5) as client:
                assert client.get("/healthz").status_code == 503
            time.sleep(limits.keepalive_seconds + 0.5)  # the silent connections are closed by then
            with httpx.Client(base_url=f"http://127.0.0.1:{svc.port}", timeout=5) as client:
                assert client.get("/healthz").status_code == 200
        finally:
            for c in idle:
                c.close()


def test_handlers_run_on_a_bounded_pool():
    running, peak, lock = [0], [0], threading.Lock()

    def slow(req: Request) -> tuple[int, str, bytes]:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return 200, "text/plain", b"ok"

    with serve(SMALL, Route("/slow", slow)) as svc:
        def get() -> int:
            with httpx.Client(timeout=10) as client:
                return client.get(f"http://127.0.0.1:{svc.port}/slow").status_code

        threads = [threading.Thread(target=get) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert peak[0] == SMALL.handler_threads


def test_public_routes_are_rate_limited_per_client():
    echo = Echo()
    routes = (Route("/public", echo, public=True), Route("/internal", echo))
    with serve(SMALL, *routes) as svc, httpx.Client(base_url=f"http://127.0.0.1:{svc.port}", timeout=5) as client:
        assert [client.get("/public").status_code for _ in range(SMALL.rate_limit_burst)] == [200] * 3
        refused = client.get("/public")
        assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 2
        assert client.get("/internal").status_code == 200  # not public: no limit
        # Behind the trusted proxy (127.0.0.1 here), each forwarded client has its own bucket.
        assert client.get("/public", headers={"X-Forwarded-For": "203.0.113.7"}).status_code == 200
        time.sleep(1.1)  # 60 a minute: one more token a second
        assert client.get("/public").status_code == 200
        assert client.get("/public").status_code == 429
    assert echo.calls == 3 + 1 + 1 + 1


def test_a_restarted_service_binds_its_port_at_once():
    with serve(SMALL) as first:
        port = first.port
        with httpx.Client(timeout=5) as client:  # the server closes first: its side waits in TIME_WAIT
            assert client.get(f"http://127.0.0.1:{port}/healthz", headers={"Connection": "close"}).status_code == 200
    with socket.socket() as plain, pytest.raises(OSError) as exc:
        plain.bind(("127.0.0.1", port))  # what the old http.server did: "port in use" for a minute
    assert exc.value.errno == errno.EADDRINUSE
    started = time.monotonic()
    with serve(SMALL, port=port) as second, httpx.Client(timeout=5) as client:
        assert second.port == port and time.monotonic() - started < 1
        assert client.get(f"http://127.0.0.1:{port}/healthz").json()["status"] == "ok"


def test_stop_is_quick_with_connections_open_and_frees_the_port():
    with serve(SMALL) as svc:
        port = svc.port
        idle = socket.create_connection(("127.0.0.1", port), timeout=5)
        with httpx.Client(timeout=5) as client:
            client.get(f"http://127.0.0.1:{port}/healthz")
            started = time.monotonic()
            svc.stop()
            assert time.monotonic() - started < 1.5
        idle.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_failing_handler_is_logged_and_answered_500_without_details(caplog):
    def boom(req: Request) -> tuple[int, str, bytes]:
        raise ValueError("secret detail")

    caplog.set_level(logging.INFO)
    with serve(SMALL, Route("/boom", boom)) as svc, httpx.Client(base_url=f"http://127.0.0.1:{svc.port}") as client:
        response = client.get("/boom")
        assert response.status_code == 500 and response.text == "internal error"
        assert client.get("/healthz").status_code == 200  # still serving
    failures = [r for r in caplog.records if r.getMessage() == "HTTP handler failed: GET /boom"]
    assert len(failures) == 1 and "secret detail" in str(failures[0].exc_info[1])
    assert not [r for r in caplog.records if r.name.startswith("uvicorn.access")]  # access logs stay quiet


def test_health_is_503_when_degraded():
    with serve(SMALL) as svc, httpx.Client(base_url=f"http://127.0.0.1:{svc.port}") as client:
        svc.health = lambda: {"ok": False, "lag": 12}
        response = client.get("/healthz")
        assert response.status_code == 503 and response.json() == {"status": "degraded", "stage": "test", "lag": 12}
        assert "wenzheng_messages_in_total" in client.get("/metrics").text


def test_path_parameters_and_declarations():
    seen: list[Request] = []

    def case(req: Request) -> tuple[int, str, bytes]:
        seen.append(req)
        return 200, "text/plain", req.params["tracking_no"].encode()

    route = Route("/cases/{tracking_no}", case)
    svc = Service("127.0.0.1", 0, "test", SMALL)
    svc.add(route, route)  # the same declaration twice (two accounts of one channel): served once
    with pytest.raises(ValueError, match="declared twice"):
        svc.add(Route("/cases/{tracking_no}", Echo()))
    with pytest.raises(TypeError):
        Route("/x", case, "GET")  # type: ignore[arg-type]
    with TestClient(svc.app, base_url="http://t") as client:
        assert client.get("/cases/GZ20261123-000001?x=1").text == "GZ20261123-000001"
        assert client.head("/cases/GZ1").status_code == 200
        assert client.post("/cases/GZ1").status_code == 405
        assert client.get("/cases/GZ1/claim").status_code == 404
    assert seen[0].query == "x=1" and seen[1].method == "GET"  # HEAD reaches the handler as GET


def test_the_settings_defaults_are_the_service_defaults():
    assert http_limits(HttpSettings()) == Limits()
