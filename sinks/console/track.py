"""The citizens' page: a case's status, office, history and reply, given its number and check code.

Nothing personal is shown — no text of the message, no notes, no names of clerks — and
the reply is masked again (:func:`wenzheng.core.privacy.mask_text`) in case a clerk
quoted a phone number. An unknown number and a wrong code give the same page, and each
client address has ``console.track_per_minute`` lookups a minute, shared with the JSON
API's ``GET /cases/<no>``: guessing codes is hopeless (10⁶ per case).
"""

from __future__ import annotations

from starlette.responses import Response

from ..api import public
from . import labels
from .web import client, page, render

PATH = "/track"


@page()
def lookup(console, request, account, form) -> Response:
    if request.method == "GET":
        return render(request, "track.html", result=None, missing=False, limited=False)
    if console.guard.wait(client(request)):
        return render(request, "track.html", 429, result=None, missing=False, limited=True)
    number = str(form.get("tracking_no", "")).strip().upper()
    code = str(form.get("code", "")).strip()
    case = console.ledger.track(number, code) if number and code else None
    if case is None:
        return render(request, "track.html", result=None, missing=True, limited=False)
    view = public(case)
    history = [{"at": e["at"], "what": labels.PUBLIC_EVENT[e["event"]], "reply": e.get("reply")}
               for e in view["history"]]
    return render(request, "track.html", result=view, history=history, missing=False, limited=False)
