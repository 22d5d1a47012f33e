"""The workbench console (问政工作台): Chinese, server-rendered (Starlette and Jinja2), served
by the ledger worker beside the case API and started by ``wenzheng up``.

Pages, by role (:mod:`wenzheng.sinks.accounts`):

* ``/console/triage`` — the dispatcher's queue: the cases the 问政办 triage office holds,
  oldest first, with the time left to the first response, the masked text, the channel,
  the model's category and confidence and the place names it found; a case page to set
  category, type, jurisdiction, lead and co-offices (the assignment publishes the message
  to the offices' queues and a correction to ``wz.labels``, once: :mod:`wenzheng.sinks.dispatch`),
  to mark it invalid or a repeat of another case, and the offices' extension requests.
* ``/console/office`` — a clerk's open cases by deadline with their 督办 colour; claim,
  reply (the public answer), close, 退回 to the dispatcher with a reason, 申请延期.
* ``/console/supervisor`` — cases by status, red and overdue cases, on-time rate per
  office and the month's charts; read-only.
* ``/track`` — a citizen's lookup by tracking number and check code.

Security: sessions are Starlette's signed cookie (HttpOnly, SameSite=Lax, Secure when
``console.secure_cookies``), signed with ``console.secret``; every form carries an
asgi-csrf double-submit token (a POST without it is refused 403, the login and /track
forms included); passwords are argon2 hashes with a lock-out; an office sees and acts on
its own cases only, and a refusal names no office; every action is recorded on the case
with the account and client address.

The application is :class:`wenzheng.sinks.console.app.Console`; this package imports
nothing, so the case API can use its words (``labels``) without the web stack.
"""
