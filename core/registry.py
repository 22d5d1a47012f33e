"""What the pipeline is made of: its stages, sinks, channels and commands, declared.

Each stage package declares its parts in its ``plugin.py`` (``register(registry)``),
named by the ``wenzheng.plugins`` entry points in pyproject.toml; a city can add
its own with ``plugins: [module, …]`` in its configuration. Everything that needs
to know the topology reads it here: ``wenzheng up`` (which workers to start, on
which ports), ``wenzheng worker`` (its choices), the CLI (the stages' commands),
the envelope (the known channels), the configuration schema (each channel's
settings model) and ``wenzheng topology``.

Declarations name their implementation as ``"module:attribute"`` strings and are
resolved only when used, so reading the registry imports nothing heavy, and this
core module imports no stage.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

ENTRY_POINTS = "wenzheng.plugins"


@dataclass(frozen=True)
class RouteInfo:
    """An HTTP route a stage or channel serves, as the topology lists it."""

    method: str
    path: str
    summary: str = ""


@dataclass(frozen=True)
class StageSpec:
    """One long-lived worker kind: ``wenzheng worker <name>``."""

    name: str
    summary: str
    factory: str
    """``"module:callable"``: ``callable(runtime)`` → a Stage, or a worker with run/stop/routes/health.
    Command-line options reach it as ``runtime.options``."""
    inputs: tuple[str, ...] = ()
    """Topics it reads: a topic role (``intake``, ``classified``, ``routed``…) or ``office.*``."""
    outputs: tuple[str, ...] = ()
    """Topics it writes, named the same way."""
    routes: tuple[RouteInfo, ...] = ()
    kind: str = "stage"
    """``ingest``, ``stage`` (topic to topic) or ``sink`` (topic to somewhere outside Kafka)."""
    port_offset: int | None = None
    """Its HTTP port is ``http.port`` + this; None: the next free offset at registration."""


@dataclass(frozen=True)
class ChannelSpec:
    """One channel the ingest worker takes messages from."""

    name: str
    summary: str
    connector: str
    """``"module:Class"``: a Connector subclass; ``Class.from_config`` makes one per account."""
    section: str = ""
    """Its settings section under ``channels`` (default: the channel's name)."""
    settings: str = ""
    """``"module:Model"`` validating that section; empty: the section is one of the built-in schema's."""
    enabled: Callable[[Any], bool] | None = None
    """Whether it runs, given the channel settings (default: the section's ``enabled``)."""
    routes: tuple[RouteInfo, ...] = ()
    push: bool = False
    """Upstream pushes to wenzheng (HTTP callbacks) instead of being polled."""

    @property
    def key(self) -> str:
        return self.section or self.name

    def is_enabled(self, channels: Any) -> bool:
        section = getattr(channels, self.key, None)
        if section is None:
            return False
        return bool(self.enabled(section) if self.enabled else getattr(section, "enabled", False))


@dataclass
class Registry:
    stages: dict[str, StageSpec] = field(default_factory=dict)
    channels: dict[str, ChannelSpec] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    """``"module:Class"`` of CLI commands (a :class:`wenzheng.core.command.Command`)."""
    plugins: set[str] = field(default_factory=set)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _builtins_loaded: bool = False

    def add_stage(self, spec: StageSpec) -> None:
        if spec.port_offset is None:
            taken = {s.port_offset for s in self.stages.values()}
            spec = StageSpec(**{**spec.__dict__, "port_offset": next(i for i in range(256) if i not in taken)})
        self._add(self.stages, spec.name, spec)

    def add_channel(self, spec: ChannelSpec) -> None:
        self._add(self.channels, spec.name, spec)

    def add_command(self, dotted: str) -> None:
        if dotted not in self.commands:
            self.commands.append(dotted)

    def _add(self, table: dict[str, Any], name: str, spec: Any) -> None:
        if table.get(name, spec) != spec:
            raise ValueError(f"{name!r} is registered twice, differently")
        table[name] = spec

    def load(self, plugins: Iterable[str] = ()) -> Registry:
        """The built-in declarations (entry points), then the named plugin modules; each once."""
        if self._builtins_loaded and not plugins:
            return self
        with self._lock:
            if not self._builtins_loaded:
                self._builtins_loaded = True
                for ep in sorted(entry_points(group=ENTRY_POINTS), key=lambda e: e.name):
                    self._register(ep.value)
            for module in plugins:
                self._register(module if ":" in module else f"{module}:register")
        return self

    def _register(self, dotted: str) -> None:
        if dotted not in self.plugins:
            self.plugins.add(dotted)
            register = resolve(dotted)
            register(self)

    def stage(self, name: str) -> StageSpec:
        try:
            return self.load().stages[name]
        except KeyError:
            raise KeyError(f"unknown stage {name!r} (one of {', '.join(self.stages)})") from None

    def channel_names(self) -> tuple[str, ...]:
        return tuple(self.load().channels)

    def ordered_stages(self) -> list[StageSpec]:
        """In pipeline order (by port offset): ingest, classify, route, ledger, then plugins'."""
        return sorted(self.load().stages.values(), key=lambda s: (s.port_offset or 0, s.name))


def resolve(dotted: str) -> Any:
    """``"package.module:attr.sub"`` → the object."""
    module, _, attr = dotted.partition(":")
    obj: Any = importlib.import_module(module)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


REGISTRY = Registry()
"""The process's registry; :meth:`Registry.load` fills it."""
