"""The console application: its routes, templates, session and CSRF middleware."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Hashable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
from asgi_csrf import asgi_csrf
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Scope, Send

from wenzheng.core.delivery import Publisher
from wenzheng.core.kafka import Topics
from wenzheng.core.privacy import mask_text

from ..accounts import Account, Accounts
from ..api import TrackGuard
from ..cases import Ledger
from . import auth, labels, supervisor, track, views
from .web import LOGIN

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "wz_session"


class Console:
    """One city's console over its ledger: what the pages need, in one place."""

    def __init__(self, ledger: Ledger, accounts: Accounts, config, guard: TrackGuard,
                 publisher: Publisher | None = None):
        self.ledger, self.accounts, self.guard, self.publisher = ledger, accounts, guard, publisher
        self.config, self.settings = config, config.settings
        self.offices = config.offices
        self.topics = Topics(self.settings.kafka.topic_prefix)
        self.tz = ZoneInfo(self.settings.city.timezone)
        self.categories = {c.code: c.name for c in self.settings.categories}
        self.places = {j.code: j.name for j in self.settings.gazetteer} | {self.settings.city.code: self.settings.city.name}
        self.templates = Jinja2Templates(env=self._env())
        secret = self.settings.console.secret.get_secret_value()
        if not secret:
            log.warning("console.secret is empty: a random one is used, so sessions end when this worker restarts")
        self.secret = secret or secrets.token_urlsafe(32)
        self._cache: dict[Hashable, tuple[float, object]] = {}
        self._cache_lock = threading.Lock()

    def _env(self) -> jinja2.Environment:
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                                 trim_blocks=True, lstrip_blocks=True)
        env.filters.update(when=labels.when, percent=labels.percent, merged=labels.merged, status=lambda s: labels.STATUS.get(s, s),
                           event=lambda s: labels.EVENT.get(s, s), mtype=lambda s: labels.TYPE.get(s, s or "—"),
                           channel=lambda s: labels.CHANNEL.get(s, s or "—"), office=self.office_name,
                           category=lambda c: self.categories.get(c, c or "未分类"),
                           place=lambda c: self.places.get(c, "不详"), mask=lambda t: mask_text(t or ""))
        env.globals.update(GRADE=labels.GRADE, MILESTONE=labels.MILESTONE, city=self.settings.city.name)
        return env

    def cached(self, key: Hashable, make: Callable[[], object], seconds: float):
        """``make()``, kept ``seconds`` under ``key`` (expired entries go when another is added)."""
        now = time.monotonic()
        with self._cache_lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = make()
        with self._cache_lock:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            self._cache[key] = (now + seconds, value)
        return value

    def office_name(self, office_id: str | None) -> str:
        office = self.offices.offices.get(office_id or "")
        return office.name if office else "—"

    @property
    def triage_office(self):
        return self.offices.triage

    def now(self) -> datetime:
        return datetime.now(self.tz)

    def signed_in(self, request: Request) -> Account | None:
        """The session's account, if it is still enabled and its password unchanged since."""
        if "session" not in request.scope or not (name := request.session.get("account")):
            return None
        return self.accounts.get(name, request.session.get("generation"))

    def app(self) -> ASGIApp:
        """The console as one ASGI app: sessions in a signed HttpOnly cookie, CSRF double-submit
        tokens on every form (asgi-csrf: also the login and /track forms, which carry no cookie yet)."""
        c = self.settings.console
        app = Starlette(routes=ROUTES, middleware=[Middleware(
            SessionMiddleware, secret_key=self.secret, session_cookie=SESSION_COOKIE,
            max_age=int(c.session_hours * 3600), same_site="lax", https_only=c.secure_cookies)],
            exception_handlers={404: _not_found})
        app.state.console = self
        return asgi_csrf(app, signing_secret=self.secret, always_protect={LOGIN, track.PATH},
                         cookie_secure=c.secure_cookies, cookie_samesite="Lax", send_csrf_failed=_csrf_failed)


async def _not_found(request: Request, exc: Exception) -> HTMLResponse:
    return HTMLResponse(_PLAIN.format(title="页面不存在", body="页面不存在。<a href=\"/console/\">返回工作台</a>"), 404)


async def _csrf_failed(scope: Scope, send: Send, message_id) -> None:
    """A form without its token (or from another site): 403, in the console's words."""
    body = _PLAIN.format(title="请求已过期", body="表单已过期或来源不明，请返回上一页刷新后重新提交。").encode()
    await send({"type": "http.response.start", "status": 403,
                "headers": [(b"content-type", b"text/html; charset=utf-8")]})
    await send({"type": "http.response.body", "body": body})


_PLAIN = ('<!doctype html><html lang="zh-CN"><meta charset="utf-8"><title>{title}</title>'
          '<link rel="stylesheet" href="/console/static/console.css"><main class="narrow"><h1>{title}</h1>'
          '<p id="message">{body}</p></main></html>')

ROUTES = [
    Route("/console", auth.home), Route("/console/", auth.home),
    Route(LOGIN, auth.login, methods=["GET", "POST"]),
    Route("/console/logout", auth.logout, methods=["POST"]),
    Route("/console/triage", views.triage),
    Route("/console/office", views.office),
    Route("/console/cases/{tracking_no}", views.case),
    Route("/console/cases/{tracking_no}/{action}", views.act, methods=["POST"]),
    Route("/console/supervisor", supervisor.dashboard),
    Route("/console/charts/{group}.png", supervisor.chart),
    Route(track.PATH, track.lookup, methods=["GET", "POST"]),
    Mount("/console/static", StaticFiles(directory=HERE / "static"), name="static"),
]
