"""Signing in and out, and where each role starts."""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response

from ..accounts import LockedOut
from .web import LOGIN, back, client, page, render

START = {"dispatcher": "/console/triage", "admin": "/console/triage", "clerk": "/console/office",
         "supervisor": "/console/supervisor"}


@page("dispatcher", "clerk", "supervisor")
def home(console, request, account, form) -> Response:
    return RedirectResponse(START[account.role], 303)


def _safe_next(target: str | None, role: str) -> str:
    """Only a path of this console: never an absolute URL an attacker put in ?next=."""
    if target and target.startswith("/console/") and not target.startswith("//"):
        return target
    return START[role]


@page()
def login(console, request, account, form) -> Response:
    if request.method == "GET":
        return render(request, "login.html", next=request.query_params.get("next", ""), name="")
    name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
    try:
        account = console.accounts.login(name, password, client(request)) if name and password else None
    except LockedOut as exc:
        return render(request, "login.html", 429, next=form.get("next", ""), name=name,
                      error=f"登录失败次数过多，账号或本机已被暂时锁定，请 {exc.minutes} 分钟后再试。")
    if account is None:
        return render(request, "login.html", 401, next=form.get("next", ""), name=name,
                      error="用户名或密码错误。")
    request.session.clear()
    request.session.update(account=account.name, generation=account.generation)
    return RedirectResponse(_safe_next(str(form.get("next", "")), account.role), 303)


@page()
def logout(console, request, account, form) -> Response:
    request.session.clear()
    return back(request, LOGIN)
