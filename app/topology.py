"""`wenzheng topology`: the pipeline as the registry declares it — the README's diagram
is this command's output."""

from __future__ import annotations

import json

from wenzheng.config import LoadedConfig
from wenzheng.core.registry import REGISTRY, ChannelSpec, StageSpec

COMMON_ROUTES = ("GET /healthz", "GET /metrics", "GET /openapi.json")


def topic(prefix: str, role: str) -> str:
    """A declared topic role as its name: ``office.*`` → ``wz.office.<office>``."""
    return prefix + role.replace("*", "<office>")


def describe(config: LoadedConfig) -> dict:
    s = config.settings
    prefix = s.kafka.topic_prefix
    stages = REGISTRY.ordered_stages()
    return {
        "city": s.city.name,
        "channels": [_channel(c, s.channels) for c in REGISTRY.channels.values()],
        "stages": [_stage(st, prefix, s.http.port) for st in stages],
    }


def _channel(c: ChannelSpec, channels: object) -> dict:
    return {"name": c.name, "mode": "push" if c.push else "poll", "enabled": c.is_enabled(channels),
            "summary": c.summary, "routes": [f"{r.method} {r.path}" for r in c.routes]}


def _stage(st: StageSpec, prefix: str, base_port: int) -> dict:
    routes = list(COMMON_ROUTES) + [f"{r.method} {r.path}" for r in st.routes]
    if st.kind == "ingest":
        routes += [f"{r.method} {r.path}" for c in REGISTRY.channels.values() for r in c.routes]
    return {"name": st.name, "kind": st.kind, "port": base_port + (st.port_offset or 0), "summary": st.summary,
            "inputs": [topic(prefix, t) for t in st.inputs] or ["channels"],
            "outputs": [topic(prefix, t) for t in st.outputs], "routes": routes}


def render(config: LoadedConfig, as_json: bool = False) -> str:
    d = describe(config)
    if as_json:
        return json.dumps(d, ensure_ascii=False, indent=2)
    lines = [f"wenzheng — {d['city']}", "", "channels (→ ingest)"]
    for c in d["channels"]:
        state = "on " if c["enabled"] else "off"
        lines.append(f"  {c['name']:9s} {c['mode']:4s} {state}  {c['summary']}")
    lines += ["", "stages"]
    for st in d["stages"]:
        lines.append(f"  {st['name']:9s} {st['kind']:6s} :{st['port']}  {', '.join(st['inputs'])}"
                     f"  →  {', '.join(st['outputs'])}")
        lines.append(f"  {'':9s} {st['summary']}")
    lines += ["", "HTTP"]
    for st in d["stages"]:
        lines.append(f"  {st['name']:9s} :{st['port']}  {', '.join(st['routes'])}")
    return "\n".join(lines)
