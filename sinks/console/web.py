"""What every console page shares: the endpoint wrapper (threads, sign-in, roles, refusals),
rendering, flash messages and redirects."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

import anyio.to_thread
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from wenzheng.core.errors import TransientError
from wenzheng.core.service import THREADS

from ..accounts import Account
from ..cases import Actor, CaseError, NotYours

if TYPE_CHECKING:
    from .app import Console

log = logging.getLogger(__name__)
LOGIN = "/console/login"
PAGE = 100
"""Cases a queue page lists: a city's triage queue or a busy office can hold thousands."""
Handler = Callable[["Console", Request, "Account | None", FormData], Response]


def page(*roles: str) -> Callable[[Handler], Callable[[Request], object]]:
    """A console endpoint: the handler runs on the service's bounded threads (it reads the
    database), with the signed-in account; without ``roles`` anyone may call it. Anonymous
    callers of a protected page are sent to the login page; a role not among ``roles`` and
    an office acting on another's case get 403 pages that name no office."""
    def wrap(handler: Handler):
        async def endpoint(request: Request) -> Response:
            form = await request.form() if request.method == "POST" else FormData()
            return await anyio.to_thread.run_sync(partial(_call, handler, roles, request, form),
                                                  limiter=request.scope.get(THREADS))
        return endpoint
    return wrap


def _call(handler: Handler, roles: tuple[str, ...], request: Request, form: FormData) -> Response:
    console: Console = request.app.state.console
    account = console.signed_in(request)
    if roles and account is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{LOGIN}?next={quote(target)}", 303)
    if roles and account is not None and not account.can(*roles):
        return error(request, 403, "您的账号无权访问此页面。")
    try:
        return handler(console, request, account, form)
    except NotYours:
        return error(request, 403, "这不是本单位的案件，无权查看或办理。")
    except TransientError as exc:
        log.warning("console: %s", exc)
        return error(request, 503, "系统暂时不可用，请稍后重试。")


def render(request: Request, template: str, code: int = 200, **context) -> Response:
    console: Console = request.app.state.console
    account = console.signed_in(request)
    flash = request.session.pop("flash", None) if "session" in request.scope else None
    return console.templates.TemplateResponse(request, template, {
        "account": account, "flash": flash, "csrf": request.scope.get("csrftoken", lambda: ""), **context},
        status_code=code, headers={"Cache-Control": "no-store"})


def error(request: Request, status: int, message: str) -> Response:
    return render(request, "error.html", status, status=status, message=message)


def back(request: Request, url: str, message: str | None = None) -> Response:
    """After a form: to ``url`` (303, so a reload does not post again) with a message shown once."""
    if message:
        request.session["flash"] = message
    return RedirectResponse(url, 303)


def pager(request: Request, total: int, size: int = PAGE) -> dict:
    """The page of a queue asked for (``?page=N``, from 1): its offset, and links to the others
    that keep the rest of the query (an admin's ``?office=``)."""
    pages = max(1, -(-total // size))
    asked = request.query_params.get("page", "1")
    page = min(max(1, int(asked)), pages) if asked.isdigit() else 1
    params = {k: v for k, v in request.query_params.items() if k != "page"}
    return {"page": page, "pages": pages, "size": size, "total": total, "offset": (page - 1) * size,
            "href": lambda n: f"{request.url.path}?{urlencode({**params, 'page': n})}"}


def client(request: Request) -> str:
    return request.client.host if request.client else ""


def actor(request: Request, account: Account) -> Actor:
    return Actor(account.name, account.name, client(request))


def refusal(exc: CaseError) -> str:
    """A ledger refusal in the console's words (it never names an office)."""
    if isinstance(exc, NotYours):
        return "这不是本单位的案件。"
    return f"操作未完成：{exc}"
