"""Who may use the workbench and the case API: accounts, login lock-out, office API tokens.

Kept in the ledger's database (tables made at start, like the ledger's):

* ``accounts`` — a name, a role and, for an office clerk, the one office it works for;
  the password as an argon2id hash (argon2-cffi's defaults); ``generation`` counts
  password resets and disablements, and a console session carries the generation it
  was made with, so a reset or a disablement ends every session of the account.
* ``login_failures`` — each failed login: the account name tried and the client
  address. An account with ``console.lockout_failures`` failures, or an address with
  ``console.lockout_client_failures``, within ``console.lockout_minutes`` is refused
  without its password being checked until the oldest of them ages out, so guessing
  is slow whichever of the two an attacker varies.
* ``api_tokens`` — bearer tokens of the JSON case API, one office each, stored as
  SHA-256 (a token is 32 random bytes: nothing to gain from a slow hash, and every
  API call checks one). Shown once, when made.

Roles: ``dispatcher`` (问政办: triage, extensions), ``clerk`` (one office's cases),
``supervisor`` (reads the whole city, acts on nothing), ``admin`` (all of these).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from wenzheng.config import load as load_config
from wenzheng.core import storage
from wenzheng.core.command import Command, UsageError

from .cases import CaseError

UTC = ZoneInfo("UTC")
ROLES = ("dispatcher", "clerk", "supervisor", "admin")
ROLE_NAMES = {"dispatcher": "问政办调度员", "clerk": "承办单位经办人", "supervisor": "督查（只读）", "admin": "管理员"}

meta = sa.MetaData()
accounts_t = sa.Table(
    "accounts", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(80), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("office_id", sa.String(80)),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("generation", sa.Integer, nullable=False, default=1),
    sa.Column("created_at", sa.DateTime, nullable=False),
)
failures_t = sa.Table(
    "login_failures", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("name", sa.String(80), nullable=False, index=True),
    sa.Column("client", sa.String(64), nullable=False, index=True),
)
tokens_t = sa.Table(
    "api_tokens", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("office_id", sa.String(80), nullable=False, index=True),
    sa.Column("label", sa.Text),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("revoked_at", sa.DateTime),
)


class AccountError(CaseError):
    """A bad account request (unknown role, a clerk without an office, a name taken)."""


class LockedOut(AccountError):
    """Too many failed logins for this account or from this address: wait ``minutes``."""

    def __init__(self, minutes: int):
        super().__init__(f"too many failed logins: try again in {minutes} minutes")
        self.minutes = minutes


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    role: str
    office_id: str | None
    generation: int

    def can(self, *roles: str) -> bool:
        return self.role == "admin" or self.role in roles


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(self, engine: sa.Engine, *, failures: int = 10, client_failures: int = 30, minutes: float = 15):
        self.engine, self.failures, self.client_failures = engine, failures, client_failures
        self.window = timedelta(minutes=minutes)
        self.hasher = PasswordHasher()
        self._dummy = self.hasher.hash(secrets.token_hex(16))  # an unknown name costs as much as a wrong password
        storage.create_tables(engine, meta)  # serialised on PostgreSQL: several consoles may start at once

    @classmethod
    def from_settings(cls, engine: sa.Engine, settings) -> Accounts:
        c = settings.console
        return cls(engine, failures=c.lockout_failures, client_failures=c.lockout_client_failures,
                   minutes=c.lockout_minutes)

    # --- accounts ------------------------------------------------------------------

    def add(self, name: str, role: str, password: str, office_id: str | None = None) -> Account:
        if role not in ROLES:
            raise AccountError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
        if (role == "clerk") != bool(office_id):
            raise AccountError("a clerk works for one office (--office ID); other roles for none")
        with self.engine.begin() as db:
            if db.execute(sa.select(accounts_t.c.id).where(accounts_t.c.name == name)).first():
                raise AccountError(f"account {name!r} exists")
            db.execute(accounts_t.insert().values(name=name, role=role, office_id=office_id, disabled=False,
                                                  password_hash=self.hasher.hash(password), generation=1,
                                                  created_at=_now()))
        account = self.get(name)
        assert account is not None
        return account

    def get(self, name: str, generation: int | None = None) -> Account | None:
        """The enabled account of that name (and, if given, still of that generation)."""
        with self.engine.connect() as db:
            row = db.execute(sa.select(accounts_t).where(accounts_t.c.name == name)).first()
        if row is None or row.disabled or (generation is not None and row.generation != generation):
            return None
        return Account(row.id, row.name, row.role, row.office_id, row.generation)

    def list(self) -> list[dict]:
        cols = (accounts_t.c.name, accounts_t.c.role, accounts_t.c.office_id, accounts_t.c.disabled)
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(sa.select(*cols).order_by(accounts_t.c.name))]

    def _update(self, name: str, **values) -> None:
        with self.engine.begin() as db:
            done = db.execute(accounts_t.update().where(accounts_t.c.name == name)
                              .values(generation=accounts_t.c.generation + 1, **values)).rowcount
        if not done:
            raise AccountError(f"no account {name!r}")

    def disable(self, name: str) -> None:
        self._update(name, disabled=True)

    def reset(self, name: str, password: str) -> None:
        """A new password; the account is enabled again, and its lock-out lifted."""
        self._update(name, password_hash=self.hasher.hash(password), disabled=False)
        with self.engine.begin() as db:
            db.execute(failures_t.delete().where(failures_t.c.name == name))

    # --- login -----------------------------------------------------------------------

    def login(self, name: str, password: str, client: str) -> Account | None:
        """The account, if the password is right and neither it nor the address is locked out
        (:class:`LockedOut`); None for a wrong name or password, recorded as a failure."""
        self._check_lock(name, client)
        with self.engine.connect() as db:
            row = db.execute(sa.select(accounts_t).where(accounts_t.c.name == name)).first()
        try:
            self.hasher.verify(row.password_hash if row else self._dummy, password)
            ok = row is not None and not row.disabled
        except (VerificationError, InvalidHashError):
            ok = False
        with self.engine.begin() as db:
            if not ok or row is None:
                db.execute(failures_t.insert().values(at=_now(), name=name[:80], client=client[:64]))
                db.execute(failures_t.delete().where(failures_t.c.at < _now() - max(self.window, timedelta(days=1))))
                return None
            db.execute(failures_t.delete().where(failures_t.c.name == name))
        return Account(row.id, row.name, row.role, row.office_id, row.generation)

    def _check_lock(self, name: str, client: str) -> None:
        since = _now() - self.window
        with self.engine.connect() as db:
            for column, key, limit in ((failures_t.c.name, name, self.failures),
                                       (failures_t.c.client, client, self.client_failures)):
                times = db.execute(sa.select(failures_t.c.at).where(column == key, failures_t.c.at >= since)
                                   .order_by(failures_t.c.at.desc()).limit(limit)).scalars().all()
                if len(times) >= limit:
                    left = times[-1] + self.window - _now()
                    raise LockedOut(max(1, -(-int(left.total_seconds()) // 60)))

    # --- API tokens ------------------------------------------------------------------

    def new_token(self, office_id: str, label: str = "") -> str:
        token = "wz_" + secrets.token_urlsafe(32)
        with self.engine.begin() as db:
            db.execute(tokens_t.insert().values(token_hash=_token_hash(token), office_id=office_id, label=label,
                                                created_at=_now()))
        return token

    def revoke_tokens(self, office_id: str) -> int:
        with self.engine.begin() as db:
            return db.execute(tokens_t.update().where(tokens_t.c.office_id == office_id,
                                                      tokens_t.c.revoked_at.is_(None))
                              .values(revoked_at=_now())).rowcount

    def token_office(self, token: str) -> tuple[str, str] | None:
        """(office id, the token's label) of a live token; None for any other string."""
        if not token.startswith("wz_"):
            return None
        with self.engine.connect() as db:
            row = db.execute(sa.select(tokens_t.c.office_id, tokens_t.c.label).where(
                tokens_t.c.token_hash == _token_hash(token), tokens_t.c.revoked_at.is_(None))).first()
        return (row.office_id, row.label or "") if row else None


def new_password() -> str:
    """Twelve characters a clerk can type: no 0/O or 1/l/I to misread."""
    alphabet = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789"
    return "".join(secrets.choice(alphabet) for _ in range(12))


class _LedgerCommand(Command):
    """A command on the configured ledger database's accounts."""

    def execute(self, args) -> int:
        from .cases import Ledger

        config = load_config(args.config)
        ledger = Ledger.from_settings(config.settings)
        try:
            return self.run(args, config, Accounts.from_settings(ledger.engine, config.settings))
        except CaseError as exc:
            raise UsageError(str(exc)) from None
        finally:
            ledger.dispose()

    def run(self, args, config, accounts: Accounts) -> int:
        raise NotImplementedError

    @staticmethod
    def office(config, office_id: str | None) -> str | None:
        if office_id and office_id not in config.offices.offices:
            raise UsageError(f"unknown office {office_id!r} (see `wenzheng topology` or offices.yaml)")
        return office_id


class UserCommand(_LedgerCommand):
    name, help = "user", "console accounts: add, list, disable, reset (a new password, printed once)"

    def configure(self, p):
        p.add_argument("action", choices=["add", "list", "disable", "reset"])
        p.add_argument("name", nargs="?")
        p.add_argument("--role", choices=ROLES, help="add: dispatcher (问政办), clerk, supervisor or admin")
        p.add_argument("--office", help="add: the clerk's office id")

    def run(self, args, config, accounts: Accounts) -> int:
        if args.action == "list":
            for a in accounts.list():
                print(f"{a['name']:20s} {a['role']:11s} {a['office_id'] or '-':20s} {'disabled' if a['disabled'] else ''}")
            return 0
        if not args.name:
            raise UsageError(f"user {args.action} needs the account's NAME")
        if args.action == "disable":
            accounts.disable(args.name)
            print(f"{args.name}: disabled (its sessions end now)")
            return 0
        password = new_password()
        if args.action == "add":
            if not args.role:
                raise UsageError("user add needs --role")
            accounts.add(args.name, args.role, password, self.office(config, args.office))
        else:
            accounts.reset(args.name, password)
        print(f"{args.name}: password {password}  (shown once; give it to the user in person)")
        return 0


class OfficeCommand(_LedgerCommand):
    name, help = "office", "an office's bearer token for the case API (printed once), or revoke its tokens"

    def configure(self, p):
        p.add_argument("action", choices=["token", "revoke"])
        p.add_argument("office_id")
        p.add_argument("--label", default="", help="token: what it is for (the office system's name)")

    def run(self, args, config, accounts: Accounts) -> int:
        office: str = self.office(config, args.office_id) or ""
        if args.action == "revoke":
            print(f"{office}: {accounts.revoke_tokens(office)} tokens revoked")
            return 0
        print(accounts.new_token(office, args.label))
        return 0
