"""A toy channel and a toy sink, registered from outside the package.

Adding either to a city is this module plus ``plugins: [tests.plugins.toy]`` and a
``channels.toy`` section in its configuration; nothing in wenzheng changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from wenzheng.core import envelope
from wenzheng.core.delivery import Out
from wenzheng.core.registry import ChannelSpec, Registry, StageSpec
from wenzheng.core.stage import Stage
from wenzheng.ingest.base import Connector, Page

TEXTS = ["章贡区红旗大道的路灯坏了三盏，晚上很黑", "南康区唐江镇自来水停了两天了，什么时候恢复",
         "瑞金市象湖镇有家餐馆油烟直排，楼上住户受不了", "于都县贡江镇小区门口占道经营，车都过不去"]


class ToySettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    enabled: bool = False
    count: int = 5
    """How many messages the toy upstream holds."""


class ToyConnector(Connector):
    channel = "toy"
    poll_seconds = 0.5

    def fetch(self, cursor: dict) -> Iterator[Page]:
        total = self.runtime.settings.channels.toy.count
        new = [self.envelope(account="toy", source_id=f"T{i:04d}", text=TEXTS[i % len(TEXTS)],
                              posted_at=envelope.now()) for i in range(cursor.get("sent", 0), total)]
        if new:
            yield Page(envelopes=new, state={"sent": total}, fetched=len(new))


class ToySink(Stage):
    """Writes where each toy message was routed to a JSONL file under the state directory."""

    name = "toysink"

    def inputs(self) -> list[str]:
        return [self.runtime.topics.routed]

    def process(self, value: dict, record) -> list[Out]:
        if value.get("channel") == "toy":
            path = Path(self.runtime.settings.state.dir) / "toysink.jsonl"
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"id": value["id"], "office": value["routing"]["office_id"]}, ensure_ascii=False)
                        + "\n")
        return []


def register(r: Registry) -> None:
    r.add_channel(ChannelSpec(name="toy", connector="tests.plugins.toy:ToyConnector",
                              settings="tests.plugins.toy:ToySettings", summary="a toy upstream of a few messages"))
    r.add_stage(StageSpec(name="toysink", kind="sink", factory="tests.plugins.toy:ToySink", inputs=("routed",),
                          summary="where each toy message went, in a file"))
