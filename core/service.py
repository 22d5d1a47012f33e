"""The worker's HTTP face: ``/healthz``, ``/metrics`` (Prometheus), ``/openapi.json``
and the routes that channels and stages declare, served by Starlette on uvicorn in a
background thread while the worker's main thread runs its stage loop.

Every worker is reachable from outside (WeChat's servers, city apps, citizens), so
the limits (:class:`Limits`, configured as ``http.*``) hold before a handler runs:

* a declared Content-Length over ``max_body_bytes`` is refused 413 before a byte of
  the body is read; a chunked body is counted as it arrives and cut at the limit;
* headers must be complete within ``read_timeout_seconds`` of the connection opening
  (or of the previous answer), and the body within as long again (408): a client
  that trickles bytes (slowloris) cannot hold a connection;
* uvicorn answers 503 beyond ``max_concurrency`` connections or requests;
* synchronous handlers run on at most ``handler_threads`` threads, never one per
  connection;
* routes declared ``public`` allow each client address ``rate_limit_per_minute``
  requests with bursts of ``rate_limit_burst`` (429 with Retry-After beyond).

A whole ASGI application (the ledger worker's console) can be :meth:`Service.mount`-ed
beside the routes: it is served behind the same body size and body deadline, and
finds the service's bounded thread pool in its scope (:data:`THREADS`) for its
blocking work; it rate-limits its own public pages.

The listening socket is bound here with SO_REUSEADDR, so a restarted worker binds its
port at once even while the previous one's connections are in TIME_WAIT.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar, Literal

import anyio
import anyio.to_thread
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.routing import Route as StarletteRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

JSON = "application/json; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
SHUTDOWN_GRACE_SECONDS = 5
"""How long stop() lets requests in progress finish before they are cancelled."""

THREADS = "wenzheng.threads"
"""Scope key of the service's thread limiter (an ``anyio.CapacityLimiter``) in a mounted app."""

Reply = tuple[int, str, bytes]
"""What a handler returns: (status, content type, body)."""
Handler = Callable[["Request"], Reply]


@dataclass(frozen=True)
class Limits:
    """What one request may cost: ``http.*`` in the configuration (HttpSettings in
    wenzheng.config.schema documents each; its defaults are these, a test holds them together)."""

    max_body_bytes: int = 1 << 20
    read_timeout_seconds: float = 10.0
    keepalive_seconds: int = 5
    max_concurrency: int = 500
    handler_threads: int = 16
    rate_limit_per_minute: float = 120.0
    rate_limit_burst: int = 30
    trusted_proxies: tuple[str, ...] = ("127.0.0.1",)


@dataclass(frozen=True)
class Request:
    """One request as a handler sees it: the body is read (and within the limits) already."""

    method: str
    path: str
    query: str
    """The raw query string, without the ``?``."""
    headers: Mapping[str, str]
    """Case-insensitive."""
    body: bytes
    client: str
    params: Mapping[str, str] = field(default_factory=dict)
    """The path pattern's parameters, e.g. ``account`` of ``/wechat/{account}``."""


@dataclass(frozen=True)
class Param:
    """A query, header or path parameter, for the OpenAPI document (path parameters
    not declared are documented as required strings)."""

    name: str
    where: Literal["query", "header", "path"] = "query"
    description: str = ""
    required: bool = False
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True)
class Body:
    """A request or response body, for the OpenAPI document."""

    description: str
    media_types: tuple[str, ...] = ("application/json",)
    schema: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Route:
    """An HTTP route a channel or stage serves: ``path`` is a pattern (``/cases/{tracking_no}``)."""

    path: str
    handler: Handler
    methods: tuple[str, ...] = ("GET",)
    summary: str = ""
    public: bool = False
    """Reachable by anyone (citizens, apps): rate-limited per client address."""
    params: tuple[Param, ...] = ()
    body: Body | None = None
    responses: Mapping[int, Body] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.methods, str):
            raise TypeError(f"{self.path}: methods is a tuple, e.g. ('POST',)")


@dataclass(frozen=True)
class Mounted:
    """A whole ASGI app a stage serves under ``path`` among its routes (:meth:`Service.mount`)."""

    path: str
    app: ASGIApp


class _Refused(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


class Buckets:
    """Token buckets by client address. Used on the event loop only, so unlocked; the
    least recently seen addresses are forgotten beyond ``size`` (they start full again)."""

    def __init__(self, per_minute: float, burst: int, size: int = 10_000):
        self.rate, self.burst, self.size = per_minute / 60.0, float(max(burst, 1)), size
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str) -> float:
        """0 when the client may go ahead; otherwise the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        tokens, since = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - since) * self.rate)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
        self._buckets[client] = (tokens - 1 if tokens >= 1 else tokens, now)
        if len(self._buckets) > self.size:
            self._buckets.popitem(last=False)
        return wait


class _HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol, plus deadlines before a request starts. uvicorn closes a
    connection left idle after an answer, but not one that opens and stays silent, nor
    one that trickles its headers: either would hold a connection (and a place under
    limit_concurrency) for ever."""

    header_seconds: ClassVar[float] = 10.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Silent from the start: closed after keepalive_seconds, as after an answer.
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(self.header_seconds, self._expire)

    def _expire(self) -> None:
        in_request = self.cycle is not None and not self.cycle.response_complete
        if not in_request and not self.transport.is_closing():  # a request's body has its own deadline
            self.transport.close()


def _protocol(header_seconds: float) -> type[H11Protocol]:
    class Protocol(_HeaderDeadline):
        pass

    Protocol.header_seconds = header_seconds
    return Protocol


def _package_version() -> str:
    try:
        return version("wenzheng")
    except PackageNotFoundError:
        return "0"


def _path_params(path: str) -> list[str]:
    return re.findall(r"{(\w+)(?::\w+)?}", path)


def _body_doc(body: Body) -> dict[str, Any]:
    schema = {"schema": dict(body.schema)} if body.schema is not None else {}
    return {"description": body.description, "content": {m: schema for m in body.media_types}}


def _responses(route: Route, method: str) -> dict[str, Any]:
    """The route's own responses, and those the service itself may give before its handler runs."""
    own: dict[int, Body] = {200: Body("OK")} if not route.responses else dict(route.responses)
    if method in BODY_METHODS:
        own.setdefault(400, Body("Content-Length is not a number", ("text/plain",)))
        own.setdefault(408, Body("the body did not arrive within http.read_timeout_seconds", ("text/plain",)))
        own.setdefault(413, Body("the body is over http.max_body_bytes", ("text/plain",)))
    if route.public:
        own.setdefault(429, Body("too many requests from this address: see Retry-After", ("text/plain",)))
    return {str(status): _body_doc(body) for status, body in sorted(own.items())}


def _operation(route: Route, method: str) -> dict[str, Any]:
    declared = {(p.where, p.name) for p in route.params}
    params = [Param(name, "path", required=True) for name in _path_params(route.path) if ("path", name) not in declared]
    op: dict[str, Any] = {
        "summary": route.summary,
        "operationId": f"{method.lower()}{re.sub(r'[^A-Za-z0-9]+', '_', route.path).rstrip('_')}",
        "responses": _responses(route, method),
    }
    if params := [*params, *route.params]:
        op["parameters"] = [{"name": p.name, "in": p.where, "required": p.required or p.where == "path",
                             "schema": dict(p.schema), **({"description": p.description} if p.description else {})}
                            for p in params]
    if route.body is not None and method in BODY_METHODS:
        op["requestBody"] = {"required": True, **_body_doc(route.body)}
    return op


def openapi(routes: Iterable[Route], title: str) -> dict[str, Any]:
    """An OpenAPI 3 document of the routes."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        for method in route.methods:
            paths.setdefault(route.path, {})[method.lower()] = _operation(route, method)
    return {"openapi": "3.0.3", "info": {"title": title, "version": _package_version()}, "paths": paths}


def _text(status: int, reason: str, close: bool = False, headers: Mapping[str, str] | None = None) -> Response:
    extra = {**(headers or {}), **({"Connection": "close"} if close else {})}
    return Response(reason.encode(), status, headers=extra, media_type=TEXT)


_HEALTH = Body("the stage's state; 503 when degraded", schema={
    "type": "object", "required": ["status", "stage"],
    "properties": {"status": {"type": "string", "enum": ["ok", "degraded"]}, "stage": {"type": "string"}}})


class Service:
    """One worker's HTTP server: ``add`` routes, ``start`` (returns at once), ``stop``."""

    def __init__(self, host: str, port: int, name: str, limits: Limits | None = None):
        self.host, self.port, self.name = host, port, name
        self.limits = limits or Limits()
        self.health: Callable[[], dict[str, Any]] = dict
        """Details for /healthz; ``"ok": False`` among them makes it 503."""
        self.routes: list[Route] = []
        self.mounts: list[tuple[str, ASGIApp]] = []
        self._threads = anyio.CapacityLimiter(self.limits.handler_threads)
        self._buckets = Buckets(self.limits.rate_limit_per_minute, self.limits.rate_limit_burst)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.add(Route("/healthz", self._healthz, summary="liveness and the stage's state",
                       responses={200: _HEALTH, 503: _HEALTH}),
                 Route("/metrics", lambda req: (200, CONTENT_TYPE_LATEST, generate_latest()),
                       summary="Prometheus metrics", responses={200: Body("metrics", ("text/plain",))}),
                 Route("/openapi.json", self._openapi, summary="this document",
                       responses={200: Body("OpenAPI 3", schema={"type": "object"})}))

    def add(self, *routes: Route | Mounted) -> None:
        """Serve these routes too. The same declaration twice (one per account of a
        channel) is served once; another handler on a method and path taken is an error."""
        for route in routes:
            if isinstance(route, Mounted):
                self.mount(route.path, route.app)
                continue
            if route in self.routes:
                continue
            for known in self.routes:
                if known.path == route.path and set(known.methods) & set(route.methods):
                    raise ValueError(f"{route.path} {'/'.join(route.methods)} is declared twice, differently")
            self.routes.append(route)

    def mount(self, path: str, app: ASGIApp) -> None:
        """Serve ``app`` for every path under ``path`` ("/" for whatever the routes do not
        take) behind the service's limits. Its own paths are the full request paths."""
        self.mounts.append((path.rstrip("/"), _Guarded(app, self.limits, self._threads)))

    @property
    def app(self) -> Starlette:
        """The ASGI application of the routes added so far, then the mounts (tests can call it in-process)."""
        routes: list[BaseRoute] = [StarletteRoute(r.path, self._endpoint(r), methods=list(r.methods))
                                   for r in self.routes]
        routes += [Mount(path, app=app) for path, app in self.mounts]
        return Starlette(routes=routes)

    def start(self) -> Service:
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(2048)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        lim = self.limits
        config = uvicorn.Config(
            self.app, http=_protocol(lim.read_timeout_seconds), lifespan="off", log_config=None, access_log=False,
            ws="none", limit_concurrency=lim.max_concurrency, timeout_keep_alive=lim.keepalive_seconds,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS, forwarded_allow_ips=list(lim.trusted_proxies),
            server_header=False)
        self._server = server = uvicorn.Server(config)
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"http-{self.name}",
                                        daemon=True)
        self._thread.start()
        while not server.started and self._thread.is_alive():
            time.sleep(0.01)
        if not server.started:
            sock.close()
            raise RuntimeError(f"the {self.name} worker's HTTP service did not start (see the log)")
        log.info("serving HTTP on %s:%s", self.host, self.port, extra={"stage": self.name, "port": self.port})
        return self

    def stop(self) -> None:
        """Stop accepting, let requests in progress finish (SHUTDOWN_GRACE_SECONDS at most), close."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(SHUTDOWN_GRACE_SECONDS + 5)
        if self._thread.is_alive():
            log.warning("HTTP service still stopping", extra={"stage": self.name})
        self._server = self._thread = None

    # --- requests ----------------------------------------------------------------

    def _endpoint(self, route: Route) -> Callable[[HTTPRequest], Awaitable[Response]]:
        async def endpoint(request: HTTPRequest) -> Response:
            client = request.client.host if request.client else ""
            if route.public and (wait := self._buckets.take(client)):
                return _text(429, "too many requests", headers={"Retry-After": str(math.ceil(wait))})
            try:
                body = await self._read_body(request)
            except _Refused as refused:  # the rest of the body is not read: the connection must close
                return _text(refused.status, refused.reason, close=True)
            method = "GET" if request.method == "HEAD" else request.method  # the server drops HEAD's body
            req = Request(method, request.scope["path"], request.scope["query_string"].decode("latin-1"),
                          request.headers, body, client, {k: str(v) for k, v in request.path_params.items()})
            status, ctype, out = await anyio.to_thread.run_sync(self._call, route, req, limiter=self._threads)
            return Response(out, status, media_type=ctype)

        return endpoint

    async def _read_body(self, request: HTTPRequest) -> bytes:
        limit = self.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and not (declared.isascii() and declared.isdigit()):
            raise _Refused(400, "Content-Length is not a number")
        if declared is not None and int(declared) > limit:
            raise _Refused(413, f"request body over {limit} bytes")
        body = bytearray()
        try:
            with anyio.fail_after(self.limits.read_timeout_seconds):
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > limit:
                        raise _Refused(413, f"request body over {limit} bytes")
        except TimeoutError:
            raise _Refused(408, "request body too slow") from None
        except ClientDisconnect:
            raise _Refused(400, "client went away") from None
        return bytes(body)

    def _call(self, route: Route, req: Request) -> Reply:
        try:
            return route.handler(req)
        except Exception:
            log.exception("HTTP handler failed: %s %s", req.method, req.path, extra={"stage": self.name})
            return 500, TEXT, b"internal error"

    def _healthz(self, req: Request) -> Reply:
        details = self.health()
        ok = details.pop("ok", True)
        body = json.dumps({"status": "ok" if ok else "degraded", "stage": self.name, **details},
                          ensure_ascii=False, default=str)
        return (200 if ok else 503), JSON, body.encode()

    def _openapi(self, req: Request) -> Reply:
        doc = openapi(self.routes, f"wenzheng {self.name} worker")
        return 200, JSON, json.dumps(doc, ensure_ascii=False).encode()


class _Guarded:
    """A mounted app behind the service's limits: a declared body over ``max_body_bytes``
    is refused before it is read, a streamed one is cut at the limit, and each part of it
    must arrive within ``read_timeout_seconds``."""

    def __init__(self, app: ASGIApp, limits: Limits, threads: anyio.CapacityLimiter):
        self.app, self.limits, self.threads = app, limits, threads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.max_body_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and not declared.isdigit():
            await _text(400, "Content-Length is not a number", close=True)(scope, receive, send)
            return
        if declared is not None and int(declared) > limit:
            await _text(413, f"request body over {limit} bytes", close=True)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            try:
                with anyio.fail_after(self.limits.read_timeout_seconds):
                    message = await receive()
            except TimeoutError:
                raise _Refused(408, "request body too slow") from None
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _Refused(413, f"request body over {limit} bytes")
            return message

        try:
            await self.app({**scope, THREADS: self.threads}, limited, send)
        except _Refused as refused:  # raised before the app answered: it was still reading
            await _text(refused.status, refused.reason, close=True)(scope, receive, send)
