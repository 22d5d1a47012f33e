"""The ingest stage and its channels, as the registry knows them.

A fifth channel: a module with a ``Connector`` subclass, its settings model, and
one ``add_channel`` here (or in a plugin module of your own, see the README)."""

from __future__ import annotations

from wenzheng.core.registry import ChannelSpec, Registry, RouteInfo, StageSpec


def register(r: Registry) -> None:
    r.add_stage(StageSpec(
        name="ingest", kind="ingest", port_offset=0,
        summary="every enabled channel on a schedule, and the push channels' HTTP callbacks",
        factory="wenzheng.ingest.worker:IngestWorker", outputs=("intake", "deadletter")))
    r.add_channel(ChannelSpec(
        name="hotline", connector="wenzheng.ingest.hotline:HotlineConnector",
        summary="12345 call transcripts dropped as files (JSON or CSV) into channels.hotline.drop_dir"))
    r.add_channel(ChannelSpec(
        name="wechat", connector="wenzheng.ingest.wechat:WeChatConnector", push=True,
        summary="official accounts' pushed messages (and an optional reconciliation poll)",
        routes=(RouteInfo("GET", "/wechat/{account}", "WeChat's URL check (echostr)"),
                RouteInfo("POST", "/wechat/{account}", "a pushed message or event"))))
    r.add_channel(ChannelSpec(
        name="weibo", connector="wenzheng.ingest.weibo:WeiboConnector",
        summary="mentions and comments of the city's Weibo accounts, polled from m.weibo.cn"))
    r.add_channel(ChannelSpec(
        name="webform", connector="wenzheng.ingest.webform:WebFormConnector",
        enabled=lambda s: s.enabled and bool(s.base_url),
        summary="the city's web-form backend, polled with an (updated time, id) cursor"))
    r.add_channel(ChannelSpec(
        name="open311", section="webform", connector="wenzheng.ingest.open311:Open311Connector", push=True,
        enabled=lambda s: s.enabled and s.open311,
        summary="Open311 GeoReport v2 service requests",
        routes=(RouteInfo("POST", "/open311/requests.json", "submit a service request"),
                RouteInfo("GET", "/open311/requests.json", "list service requests (public fields)"),
                RouteInfo("GET", "/open311/requests/{id}.json", "one service request (public fields)"),
                RouteInfo("GET", "/open311/services.json", "the service list (the twelve categories)"))))
