"""A third-party GeoReport v2 client against a real ingest worker.

``georeport`` (PyPI) is a client nobody on the team wrote: it lists services, reads one
request and lists requests with the spec's filters. It cannot post, so the request is
posted with httpx, as a city app would. The worker is `wenzheng worker ingest` in its own
process on 127.0.0.1, publishing to the session's broker.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import yaml

from tests.conftest import expected_id, free_port, write_config
from tests.ingest.test_wechat import wait_for
from tests.kafka_util import read_values
from wenzheng.config import load
from wenzheng.core.runtime import Runtime

georeport = pytest.importorskip("georeport", reason="the GeoReport client is not installed: ./dev test installs it (test extras)")

REQUEST = {"service_code": "urban_management", "description": "章贡区红旗大道88号路灯坏了，联系电话13907971234",
           "lat": "25.831123", "long": "114.933612", "address_string": "章贡区红旗大道88号",
           "email": "liu.jianhua@example.com", "first_name": "建华", "last_name": "刘", "phone": "13907971234"}


@pytest.fixture
def worker(bootstrap, tmp_path):
    """`wenzheng worker ingest` with Open311 on; yields (its URL, its configuration)."""
    cfg = write_config(tmp_path, bootstrap)
    doc = {"channels": {"hotline": {"enabled": False}, "webform": {"enabled": True, "open311": True}}}
    (cfg / "channels.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    port = free_port()
    with open(tmp_path / "ingest.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "wenzheng.app", "worker", "ingest", "--config", str(cfg),
                                 "--port", str(port)], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url), 30, "the worker's HTTP service")
        yield url, cfg
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_the_georeport_client_lists_reads_and_filters(worker, bootstrap):
    url, cfg = worker
    client = georeport.GeoReport(f"{url}/open311")
    services = client.get_service_list()
    assert {s["service_code"] for s in services} >= {"urban_management", "environment"}

    posted = httpx.post(f"{url}/open311/requests.json", data=REQUEST, headers={"Idempotency-Key": "app-1"}, timeout=10)
    assert posted.status_code == 201
    srid = posted.json()[0]["service_request_id"]
    other = httpx.post(f"{url}/open311/requests.json", json={
        "service_code": "environment", "description": "工地夜间施工", "address_string": "于都县贡江镇"}, timeout=10)
    assert other.status_code == 201

    one = client.get_service_request(srid)
    assert (one["service_request_id"], one["status"], one["service_code"]) == (srid, "open", "urban_management")
    assert (one["lat"], one["long"]) == (25.831, 114.934)
    assert "139****1234" in one["description"] and one["media_url"] is None
    text = str(one)
    for personal in ("13907971234", "liu.jianhua@example.com", "刘建华", "88号"):
        assert personal not in text

    now = datetime.now(UTC)
    window = {"start_date": (now - timedelta(hours=1)).isoformat(timespec="seconds").replace("+00:00", "Z"),
              "end_date": (now + timedelta(hours=1)).isoformat(timespec="seconds").replace("+00:00", "Z")}
    filtered = client.get_service_requests(service_code="urban_management", status="open", **window)
    assert [r["service_request_id"] for r in filtered] == [srid]
    assert len(client.get_service_requests()) == 2  # the last 90 days
    assert client.get_service_requests(status="closed") == []
    by_id = client.get_service_requests(service_request_id=f"{srid},{other.json()[0]['service_request_id']}")
    assert len(by_id) == 2
    with pytest.raises(Exception, match="400"):  # the client raises on GeoReport's error answer
        client.get_service_requests(start_date="2020-01-01T00:00:00Z", end_date="2021-01-01T00:00:00Z")

    runtime = Runtime(load(cfg))
    wait_for(lambda: len(read_values(bootstrap, runtime.topics.intake)) == 2, what="both requests on intake")
    time.sleep(0.2)
    assert {v["id"] for v in read_values(bootstrap, runtime.topics.intake)} == {
        expected_id("open311", srid), expected_id("open311", other.json()[0]["service_request_id"])}
