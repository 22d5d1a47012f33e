"""Load a city's configuration directory and validate it, or fail with one line.

A config directory holds several YAML files; each contributes top-level sections
(``city``, ``offices``, ``routing`` …). ``gazetteer.yaml`` is generated from the
administrative-division data (``wenzheng config city``) and supplies the city's
code and its county-level divisions. String values may name environment
variables as ``${NAME}`` (or ``${NAME:-default}``) so secrets stay out of the files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from wenzheng.core.registry import REGISTRY

from .gazetteer import VILLAGES_FILE, read_villages
from .schema import Settings

if TYPE_CHECKING:
    from .offices import OfficeDirectory

DEFAULT_DIR = Path(__file__).resolve().parent / "ganzhou"
ENV_BOOTSTRAP = "WENZHENG_BOOTSTRAP_SERVERS"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """A configuration problem, said in one line that names the file and the key."""

    def __init__(self, file: str | Path, key: str, message: str):
        self.file, self.key = str(file), key
        super().__init__(f"{file}: {key}: {message}" if key else f"{file}: {message}")


@dataclass(frozen=True)
class LoadedConfig:
    settings: Settings
    directory: Path
    sources: dict[str, Path]
    """Which file each top-level section came from."""
    hash: str
    """sha256 of the effective configuration (recorded on every routed message)."""

    @cached_property
    def offices(self) -> OfficeDirectory:
        """Who handles what: the office directory built from this configuration."""
        from .offices import OfficeDirectory

        return OfficeDirectory(self.settings)


def load(directory: str | Path | None = None, env: dict[str, str] | None = None) -> LoadedConfig:
    env = dict(os.environ if env is None else env)
    directory = Path(directory) if directory else DEFAULT_DIR
    if not directory.is_dir():
        raise ConfigError(directory, "", "not a configuration directory")
    raw: dict[str, Any] = {}
    city_defaults: dict[str, Any] = {}
    sources: dict[str, Path] = {}
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise ConfigError(directory, "", "no *.yaml files")
    for path in files:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:  # ValueError: a bad date
            raise ConfigError(path, "", f"not valid UTF-8 YAML: {_one_line(exc)}") from None
        if not isinstance(data, dict):
            raise ConfigError(path, "", "top level must be a mapping")
        if path.name == "gazetteer.yaml":
            city_defaults, raw["gazetteer"] = _from_gazetteer(path, data)
            sources["gazetteer"] = path
            continue
        for key, value in data.items():
            if key in raw:
                raise ConfigError(path, key, f"already defined in {sources[key].name}")
            raw[key], sources[key] = value, path
    if "gazetteer" not in raw:
        raise ConfigError(directory, "", "no gazetteer.yaml (make one with `wenzheng config city <城市名>`)")
    raw["city"] = {**city_defaults, **(raw.get("city") or {})}  # city.yaml overrides the gazetteer
    raw = _interpolate(raw, env, sources)
    if servers := env.get(ENV_BOOTSTRAP, "").strip():
        raw.setdefault("kafka", {})
        raw["kafka"] = {**raw["kafka"], "bootstrap_servers": [s.strip() for s in servers.split(",") if s.strip()]}
        sources.setdefault("kafka", Path(f"${ENV_BOOTSTRAP}"))
    _load_plugins(raw.get("plugins") or [], sources.get("plugins", directory))
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        file = sources.get(loc[0], directory) if loc else directory
        raise ConfigError(file, ".".join(loc), err["msg"]) from None
    _check_references(settings, sources, directory)
    return LoadedConfig(settings, directory, sources, _digest(settings))


def _digest(settings: Settings) -> str:
    return _hash(settings.model_dump(mode="json"))


def _hash(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def snapshot(config: LoadedConfig, state_dir: str | Path) -> Path:
    """Keep the effective configuration under ``<state.dir>/configs/<hash>.json`` (secrets
    masked), so an audit can route again exactly as a message was routed at the time."""
    d = Path(state_dir).expanduser() / "configs"
    path = d / f"{config.hash}.json"
    if not path.is_file():
        d.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(config.settings.model_dump(mode="json"), ensure_ascii=False, indent=1),
                       encoding="utf-8")
        os.replace(tmp, path)
    return path


def load_snapshot(state_dir: str | Path, digest: str) -> LoadedConfig:
    """The configuration a routing decision recorded (by its hash, or a unique prefix of it)."""
    d = Path(state_dir).expanduser() / "configs"
    found = sorted(d.glob(f"{digest}*.json")) if digest else []
    if len(found) != 1:
        what = "no" if not found else "more than one"
        raise ConfigError(d, "", f"{what} configuration snapshot {digest!r} (kept when a route worker starts)")
    try:
        data = json.loads(found[0].read_text(encoding="utf-8"))
        _load_plugins(data.get("plugins") or [], found[0])
        settings = Settings.model_validate(data)
    except (ValueError, ValidationError) as exc:
        raise ConfigError(found[0], "", f"not a configuration snapshot: {_one_line(exc)}") from None
    # The file as it was written, not the settings read back: a section added to the schema
    # since (categories …) comes in with its default and must not make the snapshot look edited.
    if (actual := _hash(data)) != found[0].stem:
        raise ConfigError(found[0], "", f"hashes to {actual[:12]}, not {found[0].stem[:12]} (edited?)")
    return LoadedConfig(settings, d, {}, actual)


def _from_gazetteer(path: Path, data: dict) -> tuple[dict, list]:
    if "jurisdictions" not in data or "city" not in data:
        raise ConfigError(path, "", "a gazetteer needs `city` and `jurisdictions`")
    city = {k: v for k, v in data["city"].items() if k in ("code", "name", "province", "aliases")}
    return city, _with_villages(data["jurisdictions"], path.with_name(VILLAGES_FILE))


def _with_villages(jurisdictions: list, path: Path) -> list:
    """The villages of ``villages.tsv`` (a table: 4,000 YAML entries would take a second to read)."""
    if not path.is_file() or not isinstance(jurisdictions, list):
        return jurisdictions
    try:
        villages = read_villages(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "", _one_line(exc)) from None
    codes = {j.get("code") for j in jurisdictions if isinstance(j, dict)}
    if stray := sorted(set(villages) - codes):
        raise ConfigError(path, "", f"villages of counties the gazetteer does not have: {', '.join(stray)}")
    return [{**j, "villages": villages.get(str(j.get("code")), [])} if isinstance(j, dict) else j
            for j in jurisdictions]


def _interpolate(value: Any, env: dict[str, str], sources: dict[str, Path], path: tuple = ()) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, env, sources, (*path, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env, sources, (*path, str(i))) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:

        def sub(m: re.Match) -> str:
            if m.group(1) in env:
                return env[m.group(1)]
            if m.group(2) is not None:
                return m.group(2)
            file = sources.get(path[0], Path("?")) if path else Path("?")
            raise ConfigError(file, ".".join(path), f"environment variable {m.group(1)} is not set")

        return _ENV_REF.sub(sub, value)
    return value


def _check_references(settings: Settings, sources: dict[str, Path], directory: Path) -> None:
    from .offices import build_offices

    where = sources.get("routing", directory)
    known = {o.id for o in build_offices(settings)}
    departments = {o.split("-", 1)[1] for o in known}
    codes = {j.code for j in settings.gazetteer} | {settings.city.code}
    for i, rule in enumerate(settings.routing.rules):
        key = f"routing.rules.{i}"
        for field, office in [("office", rule.office), *(("co_offices", o) for o in rule.co_offices)]:
            relative = office.startswith("*-")
            if (office[2:] not in departments) if relative else (office not in known):
                what = "department" if relative else "office"
                raise ConfigError(where, f"{key}.{field}", f"unknown {what} {office!r}")
        if rule.jurisdiction is not None and rule.jurisdiction not in codes:
            raise ConfigError(where, f"{key}.jurisdiction", f"unknown jurisdiction {rule.jurisdiction!r}")
        if rule.category is not None:
            from .schema import CATEGORIES

            if rule.category not in CATEGORIES:
                raise ConfigError(where, f"{key}.category", f"unknown category {rule.category!r}")
    for code in settings.places:
        if code not in codes:
            raise ConfigError(sources.get("places", directory), f"places.{code}", "unknown jurisdiction code")
    seen: set[str] = set()
    for j in settings.gazetteer:
        if j.code in seen:
            raise ConfigError(sources.get("gazetteer", directory), "jurisdictions", f"duplicate code {j.code}")
        seen.add(j.code)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _load_plugins(plugins: list, file: Path) -> None:
    """A configuration's plugin modules register their channels before the channels are validated."""
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ConfigError(file, "plugins", "a list of module names")
    try:
        REGISTRY.load(plugins)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(file, "plugins", f"cannot load: {_one_line(exc)}") from None
