"""The city configuration, validated at start.

Every model is frozen and forbids unknown keys, so a typo in a YAML file is an
error naming the file and the key, not a silently ignored setting. Each field has
a default where one makes sense and a one-line docstring under it.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from wenzheng.core.registry import REGISTRY, resolve

#: The twelve category codes. Fixed: models, offices, routing rules and recorded messages
#: name them. Their names and scopes are the configuration's table (``Settings.categories``).
CATEGORIES: tuple[str, ...] = (
    "urban_management",
    "housing_construction",
    "environment",
    "transport",
    "education_culture_sports",
    "labour_social_security",
    "health",
    "market_commerce",
    "public_utilities",
    "public_security",
    "agriculture_rural",
    "civil_affairs",
)
#: Message types: 咨询 投诉 建议 求助 表扬.
MESSAGE_TYPES: tuple[str, ...] = ("consultation", "complaint", "suggestion", "help", "praise")
UNKNOWN = "unknown"


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- categories ----------------------------------------------------------------


class Category(Model):
    code: str
    """One of the twelve fixed codes (``CATEGORIES``)."""
    name: str
    """中文名, as reports and Open311's service list show it (城市管理)."""
    scope: str = ""
    """What it covers, one line, 、 between matters (城管执法、违章搭建、…)."""


@lru_cache(maxsize=1)
def packaged_categories() -> tuple[Category, ...]:
    """The packaged city's table: the default for a configuration written before there was
    one, and for the snapshots such configurations left."""
    import yaml

    path = Path(__file__).resolve().parent / "ganzhou" / "categories.yaml"
    return tuple(Category.model_validate(c) for c in yaml.safe_load(path.read_text(encoding="utf-8"))["categories"])


# --- the city and its gazetteer -------------------------------------------------


class Township(Model):
    code: str
    """Administrative code of the township (乡镇) or street (街道)."""
    name: str
    aliases: list[str] = []
    """Shorter names citizens use (唐江 for 唐江镇)."""


class Village(Model):
    code: str
    """Twelve-digit 统计局 code of the village (村) or community (居委会/社区)."""
    name: str
    """As people write it: 莲塘村, 西津路社区 (not 莲塘村委会)."""
    township: str = ""
    """The gazetteer's code of its township ("" for an industrial park's or a 林场's)."""
    aliases: list[str] = []
    """Old or other full names (…村, …社区), and a short name (黄坑 for 黄坑村) where it is safe."""


class Jurisdiction(Model):
    code: str
    """Six-digit county-level code, e.g. 360703."""
    name: str
    aliases: list[str] = []
    townships: list[Township] = []
    villages: list[Village] = []
    """From ``villages.tsv`` beside the gazetteer, when the configuration has one."""
    places: list[str] = []
    """Well-known places (landmarks, markets, scenic spots) that resolve to this county."""


class City(Model):
    code: str
    """Six-digit prefecture-level code, e.g. 360700."""
    name: str
    province: str = ""
    aliases: list[str] = []
    timezone: str = "Asia/Shanghai"
    """An IANA time zone: office hours and deadlines are counted in it."""
    case_prefix: str = "WZ"
    """Prefix of the tracking numbers citizens read out on the phone (GZ20261122-000123)."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ValueError, ZoneInfoNotFoundError):
            raise ValueError(f"unknown time zone {value!r} (e.g. Asia/Shanghai)") from None
        return value


# --- offices -----------------------------------------------------------------


class Department(Model):
    code: str
    """Short code, unique within its level; the office id is <jurisdiction>-<code>."""
    name: str
    """Name without the place, e.g. 城市管理局; the county name is prefixed."""
    categories: list[str] = []
    """Categories this department handles (归口办理)."""

    @field_validator("categories")
    @classmethod
    def _known_categories(cls, value: list[str]) -> list[str]:
        for code in value:
            if code not in CATEGORIES:
                raise ValueError(f"unknown category {code!r}")
        return value


class Office(Model):
    id: str
    name: str
    jurisdiction: str
    categories: tuple[str, ...] = ()
    kind: Literal["department", "government", "triage", "special"] = "department"


class OfficesConfig(Model):
    county_departments: list[Department]
    """The departments every county-level division has, by the categories they handle."""
    city_departments: list[Department]
    """The city-level departments, for messages that concern the city as a whole."""
    county_government: Department = Department(code="zfb", name="人民政府办公室")
    """Where a county's messages go when no department takes the category (fallback)."""
    triage: Department = Department(code="wzb", name="问政办")
    """The city 问政办: messages nobody could place go to its triage queue."""
    special: list[Office] = []
    """Offices outside the template, e.g. 住房公积金管理中心, named by keyword rules."""
    names: dict[str, str] = {}
    """Overrides of generated office names by office id (a county whose bureau is named differently)."""
    absent: list[str] = []
    """Generated office ids that do not exist in this city; their categories fall back."""


# --- routing and time limits -------------------------------------------------


class RoutingRule(Model):
    name: str
    """Recorded on every message this rule routes, for audits."""
    keywords: list[str] = []
    """Any of these in the title or text makes the rule match."""
    category: str | None = None
    jurisdiction: str | None = None
    office: str
    """Lead office id (牵头单位): an office id (``360700-gjj``), or ``*-<department code>``
    for that department of the message's own county (``*-jtj``: its 教育体育局; the city's
    when the message concerns the city as a whole). A relative rule does not apply to a
    message whose county is unknown, or whose county has no such department."""
    co_offices: list[str] = []
    """Co-handling offices (联合办理), written like ``office``."""


class RoutingConfig(Model):
    min_confidence: float = Field(0.35, ge=0, le=1)
    """Below this category confidence a message goes to triage instead of an office."""
    rules: list[RoutingRule] = []
    """Keyword rules, tried in order before the (category, jurisdiction) table."""


class TypeLimit(Model):
    working_days: float
    """Time to answer (答复), in working days."""


class OfficePeriod(Model):
    start: str
    """Opening, "HH:MM" local time."""
    end: str
    """Closing, "HH:MM"."""


class CalendarOverrides(Model):
    holidays: list[date] = []
    """Rest days beyond chinese-calendar's (e.g. next year's schedule before a release knows it)."""
    workdays: list[date] = []
    """Make-up working days (调休上班) beyond chinese-calendar's."""


class ChannelLimits(Model):
    first_response_hours: float | None = None
    """Overrides the city-wide first response for this channel."""
    by_type: dict[str, TypeLimit] = {}
    """Overrides the answer limit of these types for this channel."""


class TimeLimits(Model):
    first_response_hours: float = 1
    """First response (签收) within this many working hours."""
    first_response_hours_rest_day: float = 8
    """…or this many clock hours when the message arrives on a rest day."""
    by_type: dict[str, TypeLimit] = {}
    by_channel: dict[str, ChannelLimits] = {}
    """Per channel (hotline, wechat, weibo, webform) overrides."""
    office_hours: list[OfficePeriod] = [OfficePeriod(start="08:30", end="12:00"),
                                        OfficePeriod(start="14:30", end="17:30")]
    """When working hours run; a working day ends at the last closing."""
    calendar: CalendarOverrides = CalendarOverrides()
    """Holidays and make-up days on top of chinese-calendar's."""

    @field_validator("by_channel")
    @classmethod
    def _known_channels(cls, value: dict[str, ChannelLimits]) -> dict[str, ChannelLimits]:
        for channel, limits in value.items():
            if channel not in ("hotline", "wechat", "weibo", "webform"):
                raise ValueError(f"unknown channel {channel!r}")
            cls._known_types(limits.by_type)
        return value

    @field_validator("by_type")
    @classmethod
    def _known_types(cls, value: dict[str, TypeLimit]) -> dict[str, TypeLimit]:
        for code in value:
            if code not in MESSAGE_TYPES:
                raise ValueError(f"unknown message type {code!r}")
        return value


class Supervision(Model):
    """督办: milestones in clock hours from receipt (马鞍山's: claimed within 24 hours,
    answered within 72, closed within a week); the answer deadline of the case wins when
    it is earlier. Grades by the share of the allowed time gone."""

    claim_hours: float = 24
    """Claimed (签收) within this many hours."""
    reply_hours: float = 72
    """Answered within this many hours (or by the case's answer deadline, if earlier)."""
    close_hours: float = 168
    """Closed (办结) within this many hours."""
    yellow_at: float = Field(0.75, gt=0, lt=1)
    """Yellow once this share of a milestone's time is gone."""
    orange_at: float = Field(0.9, gt=0, lt=1)
    """Orange once this share is gone; red when it is all gone."""
    every_seconds: float = 60
    """How often the ledger worker grades the open cases."""


# --- channels ----------------------------------------------------------------


class HotlineChannel(Model):
    enabled: bool = True
    drop_dir: str = "var/hotline"
    """Folder the 12345 call centre drops one transcript file (JSON or CSV) per call into."""
    account: str = "12345"
    poll_seconds: float = 2.0
    settle_seconds: float = 1.0
    """A file is read only once its size and mtime have not changed for this long."""
    encodings: list[str] = ["utf-8-sig", "gb18030"]
    """Tried in order; older call-centre systems write GBK/GB18030."""
    archive_days: int = Field(30, ge=0)
    """Published files are kept in drop_dir/archive/YYYY-MM-DD/ this many days, then deleted; 0: deleted at once."""


class WeChatAccount(Model):
    appid: str
    token: SecretStr
    """The token the callback URL is configured with (signature check)."""
    encoding_aes_key: SecretStr | None = None
    """Safe mode (安全模式) when set: pushes are AES-encrypted with it."""
    secret: SecretStr | None = None
    """AppSecret, for access tokens: needed to poll customer-service message records."""
    name: str = ""
    poll: bool = False
    """Also reconcile by polling customservice/msgrecord/getmsglist (backfill)."""


class WeChatChannel(Model):
    enabled: bool = False
    api_base: str = "https://api.weixin.qq.com"
    poll_seconds: float = 3600
    max_age_seconds: float = Field(300, gt=0)
    """A push signed further than this from now, either way, is refused; nonces are remembered this long."""
    accounts: dict[str, WeChatAccount] = {}
    """Keyed by account id: the callback URL of account ``gz`` is /wechat/gz."""


class WeiboAccount(Model):
    uid: str
    """The platform account's own uid: its own replies are skipped."""
    name: str = ""
    cookie: SecretStr | None = None
    """m.weibo.cn session cookie of the account (mentions and comments need a login)."""


class WeiboChannel(Model):
    enabled: bool = False
    api_base: str = "https://m.weibo.cn"
    poll_seconds: float = 60
    max_pages: int = 5
    """Pages fetched per poll at most; the rest wait for the next poll."""
    accounts: dict[str, WeiboAccount] = {}


class WebFormChannel(Model):
    enabled: bool = False
    base_url: str = ""
    """The web-form backend's API root, polled for new and updated submissions."""
    token: SecretStr | None = None
    poll_seconds: float = 30
    page_size: int = 100
    open311: bool = True
    """Accept Open311 GeoReport v2 submissions at POST /open311/requests.json."""
    open311_api_keys: list[SecretStr] = []
    """Keys an Open311 client must send (``api_key``); empty: none required."""


class Channels(Model):
    """The built-in channels' sections; a plugin channel's section is validated by the
    settings model its registry entry names (see wenzheng.core.registry)."""

    model_config = ConfigDict(frozen=True, extra="allow")
    max_text_chars: int = Field(256 * 1024, ge=1000)
    """Longest text (and context, and title) of a message, in characters; longer ones are cut
    with a visible ``…[截断：原文 N 字]`` (ingest/base.py says why cut, not dead-lettered)."""
    hotline: HotlineChannel = HotlineChannel()
    wechat: WeChatChannel = WeChatChannel()
    weibo: WeiboChannel = WeiboChannel()
    webform: WebFormChannel = WebFormChannel()

    @model_validator(mode="after")
    def _plugin_sections(self) -> Channels:
        extra = self.__pydantic_extra__ or {}
        specs = {spec.key: spec for spec in REGISTRY.load().channels.values() if spec.settings}
        for key, value in extra.items():
            if key not in specs:
                known = sorted({*type(self).model_fields, *specs} - {"max_text_chars"})
                raise ValueError(f"unknown channel {key!r} (one of {', '.join(known)})")
            try:
                extra[key] = resolve(specs[key].settings).model_validate(value or {})
            except ValidationError as exc:
                err = exc.errors()[0]
                raise ValueError(f"{key}.{'.'.join(map(str, err['loc']))}: {err['msg']}") from None
        return self


# --- runtime -----------------------------------------------------------------


class KafkaSettings(Model):
    bootstrap_servers: list[str] = []
    """Empty: `wenzheng up` starts the embedded broker. Env WENZHENG_BOOTSTRAP_SERVERS overrides."""
    topic_prefix: str = "wz."
    partitions: int = Field(3, ge=1)
    """Partitions of the shared topics (intake, classified, …): the most workers a stage can use."""
    office_partitions: int = Field(1, ge=1)
    replication_factor: int = Field(1, ge=1)
    session_timeout_ms: int = 6000
    """Short on purpose: a new group gets its first message after ~half of it (Tansu)."""
    heartbeat_interval_ms: int = 1000
    max_poll_records: int = 500
    client_id: str = "wenzheng"


class HttpSettings(Model):
    """Every worker's HTTP service; the limits hold before a handler runs (wenzheng.core.service)."""

    host: str = "127.0.0.1"
    """Use 0.0.0.0 in production so WeChat can reach the callback."""
    port: int = 8080
    max_body_bytes: int = Field(1 << 20, ge=1)
    """A request body over this is refused (413) before it is read: WeChat pushes and Open311 bodies are small."""
    read_timeout_seconds: float = Field(10.0, gt=0)
    """A request's headers, then its body, must each arrive within this (408 or closed): no slowloris."""
    keepalive_seconds: int = Field(5, ge=1)
    """How long a connection may stay silent, new or between requests, before it is closed."""
    max_concurrency: int = Field(500, ge=1)
    """Connections (or requests) at once; beyond it a request gets 503."""
    handler_threads: int = Field(16, ge=1)
    """Threads that run the routes' handlers; more requests wait for one."""
    rate_limit_per_minute: float = Field(120.0, ge=0)
    """Requests a minute per client address on public routes (case lookup, Open311); 0: no limit."""
    rate_limit_burst: int = Field(30, ge=1)
    """Requests a client may make at once before the per-minute rate applies (429 with Retry-After beyond)."""
    trusted_proxies: tuple[str, ...] = ("127.0.0.1",)
    """Addresses whose X-Forwarded-For names the client (your reverse proxy), for the rate limit."""


class StateSettings(Model):
    dir: str = "var/state"
    """Checkpoints, the delivery journal and trained models live here (relative to the cwd)."""
    dedup_retention_days: float = 14
    """How long message ids are remembered for de-duplication (the journal is pruned to it hourly)."""
    url: str = ""
    """PostgreSQL for the delivery journal that every machine shares (e.g. postgresql://wz@db/wenzheng);
    empty: SQLite under ``dir``, for one machine. Needed when a stage runs on several machines."""


class LedgerSettings(Model):
    url: str = ""
    """SQLAlchemy URL of the case ledger, e.g. postgresql+psycopg://wz@db/wenzheng; empty: SQLite in the state dir."""
    duplicate_window_days: float = 7
    """A message joins an open (or this recently closed) case of its jurisdiction received this close in time."""
    duplicate_threshold: float = Field(0.6, gt=0, le=1)
    """Score at which a message is a repeat of a case (see sinks/repeats.py)."""


class ConsoleSettings(Model):
    """The ledger worker's workbench console and the case API's accounts (wenzheng.sinks.console)."""

    enabled: bool = True
    """Serve the console (/console/…, /track) beside the case API."""
    secret: SecretStr = SecretStr("")
    """Signs session and CSRF cookies (WENZHENG_CONSOLE_SECRET); empty: a random one per start,
    so sessions end when the worker restarts and several ledger workers do not share them."""
    secure_cookies: bool = False
    """Send cookies only over HTTPS: set it when the console is behind TLS (it should be)."""
    session_hours: float = Field(10, gt=0)
    """A login lasts this long (a working day), then the clerk signs in again."""
    lockout_failures: int = Field(10, ge=1)
    """Failed logins of one account within ``lockout_minutes`` that lock it until they age out."""
    lockout_client_failures: int = Field(30, ge=1)
    """Failed logins from one client address (any account) within ``lockout_minutes`` that lock the address."""
    lockout_minutes: float = Field(15, gt=0)
    track_per_minute: float = Field(10, gt=0)
    """Lookups a minute per client address on the citizens' /track page (against enumeration)."""
    track_burst: int = Field(5, ge=1)


class ClassifierSettings(Model):
    model_dir: str | None = None
    """A trained model directory; empty: the baseline trained from the packaged corpus."""
    outputs: list[str] = []
    """Labelled fields beyond category, type and jurisdiction (e.g. urgency) that training gives a head of their own."""


class PrivacySettings(Model):
    pseudonym_key: SecretStr = SecretStr("")
    """HMAC key of author pseudonyms, message ids and address fingerprints (WENZHENG_PSEUDONYM_KEY).
    No default: with a known key a hashed phone number is reversible (there are ~10^11)."""

    PUBLISHED_KEYS: ClassVar[frozenset[str]] = frozenset({"wenzheng-dev-only-key"})
    """Keys once shipped in the packaged configuration."""
    MIN_KEY_CHARS: ClassVar[int] = 16

    def key_problem(self) -> str | None:
        """Why the key cannot protect anything (None: it can), as the one line a worker stops with."""
        key = self.pseudonym_key.get_secret_value()
        why = ("is not set" if not key else "is the published development key" if key in self.PUBLISHED_KEYS
               else f"is shorter than {self.MIN_KEY_CHARS} characters" if len(key) < self.MIN_KEY_CHARS else None)
        return why and (f"runtime.yaml: privacy.pseudonym_key {why}: set WENZHENG_PSEUDONYM_KEY to a secret of "
                        "your own, e.g. export WENZHENG_PSEUDONYM_KEY=$(openssl rand -hex 32)")


class Settings(Model):
    """Everything a city configures; loaded from the YAML files of one directory."""

    city: City
    gazetteer: list[Jurisdiction] = Field(min_length=1)
    places: dict[str, list[str]] = {}
    """Well-known places (landmarks, markets, scenic spots, villages) by the code they resolve to."""
    offices: OfficesConfig
    categories: list[Category] = Field(default_factory=lambda: list(packaged_categories()))
    """The twelve categories, each once: code, name and scope (categories.yaml)."""
    routing: RoutingConfig = RoutingConfig()
    time_limits: TimeLimits = TimeLimits()
    supervision: Supervision = Supervision()
    channels: Channels = Channels()
    kafka: KafkaSettings = KafkaSettings()
    http: HttpSettings = HttpSettings()
    state: StateSettings = StateSettings()
    ledger: LedgerSettings = LedgerSettings()
    classifier: ClassifierSettings = ClassifierSettings()
    console: ConsoleSettings = ConsoleSettings()
    privacy: PrivacySettings = PrivacySettings()
    plugins: list[str] = []
    """Python modules with a ``register(registry)`` that add channels, stages, sinks or commands."""

    @field_validator("categories")
    @classmethod
    def _the_twelve(cls, value: list[Category]) -> list[Category]:
        codes = [c.code for c in value]
        for code in codes:
            if code not in CATEGORIES:
                raise ValueError(f"unknown category {code!r}: the codes are fixed ({', '.join(CATEGORIES)})")
            if codes.count(code) > 1:
                raise ValueError(f"category {code!r} listed twice")
        if missing := [c for c in CATEGORIES if c not in codes]:
            raise ValueError(f"missing categories: {', '.join(missing)}")
        return value
