"""Open311 GeoReport v2 intake over real HTTP (a wenzheng Service on 127.0.0.1:0) and the
real embedded broker: POST spools and answers 201, the drainer publishes to wz.intake."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from urllib.parse import urlencode

import pytest

from tests.conftest import TEST_KEY, expected_id
from tests.kafka_util import read_values
from wenzheng.config.schema import CATEGORIES, WebFormChannel
from wenzheng.core.delivery import Publisher
from wenzheng.core.kafka import producer as make_producer
from wenzheng.core.privacy import pseudonym
from wenzheng.core.service import Service
from wenzheng.ingest import open311
from wenzheng.ingest.base import spool_for
from wenzheng.ingest.open311 import Open311Connector, _index_for, keyed_id

FORM = {"service_code": "urban_management", "description": "章贡区红旗大道88号门口的路灯坏了半个月，晚上很黑。",
        "lat": "25.8311", "long": "114.9336", "address_string": "章贡区红旗大道88号",
        "email": "liu.jianhua@example.com", "first_name": "建华", "last_name": "刘", "phone": "13907971234",
        "media_url": "https://wz.ganzhou.gov.cn/upload/2026/11/lamp.jpg"}


def o311(srid: str) -> str:
    return expected_id("open311", srid)


class Client:
    def __init__(self, base: str):
        self.base = base

    def request(self, method, path, body: bytes | None = None, headers: dict | None = None):
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            with exc:
                raw = exc.read()
            return exc.code, json.loads(raw) if raw.startswith((b"[", b"{")) else raw

    def post_form(self, fields: dict, query: str = "", **headers):
        return self.request("POST", "/open311/requests.json" + query, urlencode(fields).encode(),
                            {"Content-Type": "application/x-www-form-urlencoded", **headers})

    def post_json(self, doc, **headers):
        return self.request("POST", "/open311/requests.json", json.dumps(doc, ensure_ascii=False).encode(),
                            {"Content-Type": "application/json; charset=utf-8", **headers})

    def get(self, path):
        return self.request("GET", path)


class Stack:
    def __init__(self, bootstrap, runtime, connector, service):
        self.bootstrap, self.runtime, self.connector = bootstrap, runtime, connector
        self.client = Client(f"http://127.0.0.1:{service.port}")

    def intake(self) -> list[dict]:
        return read_values(self.bootstrap, self.runtime.topics.intake)

    def wait_for(self, n: int, timeout: float = 15.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(values := self.intake()) >= n:
                return values
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {n} messages on intake")


def make_stack(runtime, bootstrap, **webform):
    s = runtime.settings
    runtime.settings = s.model_copy(update={"channels": s.channels.model_copy(
        update={"webform": WebFormChannel(enabled=True, **webform)})})
    publisher = Publisher(runtime.settings, make_producer(runtime.settings), runtime.journal, "ingest.open311")
    (connector,) = Open311Connector.from_config(runtime, lambda name: publisher)
    service = Service("127.0.0.1", 0, "ingest")
    service.add(*connector.routes())
    return Stack(bootstrap, runtime, connector, service.start()), service


@pytest.fixture
def stack(runtime, bootstrap):
    st, service = make_stack(runtime, bootstrap)
    yield st
    service.stop()
    st.connector.publisher.close()


@pytest.fixture
def keyed(runtime, bootstrap):
    st, service = make_stack(runtime, bootstrap, open311_api_keys=["app-key-1", "app-key-2"])
    yield st
    service.stop()
    st.connector.publisher.close()


def test_form_and_json_requests_land_on_intake_with_pii_only_in_pii(stack):
    status, body = stack.client.post_form(FORM)
    assert status == 201 and body[0]["service_notice"]
    form_id = body[0]["service_request_id"]
    doc = {"service_code": "environment", "description": "于都县贡江镇工地夜里十二点还在施工，噪音太大。",
           "address_string": "于都县贡江镇长征大道", "phone": "13507970001", "first_name": "芳", "last_name": "王"}
    status, body = stack.client.post_json(doc)
    assert status == 201
    json_id = body[0]["service_request_id"]

    by_id = {v["id"]: v for v in stack.wait_for(2)}
    assert set(by_id) == {o311(form_id), o311(json_id)}
    env = by_id[o311(form_id)]
    assert env["channel"] == "open311" and env["source_id"] == form_id
    assert env["text"] == FORM["description"]
    assert env["location"] == {"text": "章贡区红旗大道88号", "lat": 25.8311, "lon": 114.9336}
    assert env["attachments"] == [{"kind": "image", "url": FORM["media_url"]}]
    assert env["author"] == pseudonym(TEST_KEY.encode(), "open311", "13907971234")
    assert env["pii"] == {"name": "刘建华", "first_name": "建华", "last_name": "刘",
                          "email": "liu.jianhua@example.com", "phone": "13907971234"}
    assert env["raw"]["service_code"] == "urban_management"
    public = json.dumps({k: v for k, v in env.items() if k != "pii"}, ensure_ascii=False)
    for secret in ("13907971234", "liu.jianhua@example.com", "刘建华"):
        assert secret not in public
    env = by_id[o311(json_id)]
    assert env["pii"]["phone"] == "13507970001" and env["location"]["lat"] is None
    assert "13507970001" not in json.dumps({k: v for k, v in env.items() if k != "pii"})
    stack.connector.drain()  # waits for a drain in flight (the drain lock); nothing left to send
    assert spool_for(stack.runtime).count("open311") == 0  # deleted once Kafka acknowledged


BAD = [
    ({**FORM, "service_code": ""}, "service_code required"),
    ({**FORM, "service_code": "potholes"}, "not found"),
    ({**FORM, "description": "  "}, "description required"),
    ({k: v for k, v in FORM.items() if k not in ("lat", "long", "address_string")}, "location required"),
    ({**FORM, "long": ""}, "together"),
    ({**FORM, "lat": "95"}, "out of range"),
    ({**FORM, "lat": "北纬25度"}, "not a number"),
    ({**FORM, "email": "not-an-address"}, "email"),
    ({**FORM, "media_url": "file:///etc/passwd"}, "media_url"),
]


def test_bad_requests_get_georeport_400_errors_and_nothing_is_kept(stack):
    for fields, expect in BAD:
        for status, body in (stack.client.post_form(fields), stack.client.post_json(fields)):
            assert status == 400, expect
            assert len(body) == 1 and body[0]["code"] == 400 and expect in body[0]["description"]
    assert spool_for(stack.runtime).count("open311") == 0 and stack.intake() == []


def test_unreadable_bodies_get_georeport_errors(stack):
    c = stack.client
    status, body = c.request("POST", "/open311/requests.json", b"{not json", {"Content-Type": "application/json"})
    assert status == 400 and body[0]["code"] == 400 and "not JSON" in body[0]["description"]
    status, body = c.post_json(["a", "b"])
    assert status == 400 and "not an object" in body[0]["description"]
    status, body = c.request("POST", "/open311/requests.json", b"--x\r\n", {"Content-Type": "multipart/form-data; boundary=x"})
    assert status == 400 and "Content-Type" in body[0]["description"]
    status, body = c.request("POST", "/open311/requests.json", "description=路灯".encode("gb18030"),
                             {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400 and "UTF-8" in body[0]["description"]
    status, body = c.request("POST", "/open311/requests.json", b"x" * (300 * 1024),
                             {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 413 and body[0]["code"] == 413


def test_api_key_is_enforced_when_configured(keyed):
    c = keyed.client
    status, body = c.post_form(FORM)
    assert status == 403 and body == [{"code": 403, "description": "api_key required"}]
    status, body = c.post_form({**FORM, "api_key": "guessed"})
    assert status == 403 and body[0]["description"] == "api_key invalid"
    assert c.post_form({**FORM, "api_key": "app-key-2"})[0] == 201
    assert c.post_form(FORM, query="?api_key=app-key-1")[0] == 201  # GeoReport clients often send it in the query
    assert c.post_json({**FORM, "api_key": "app-key-1"})[0] == 201
    envs = keyed.wait_for(3)
    assert all("app-key" not in json.dumps(e, ensure_ascii=False) for e in envs)  # only a digest of the key
    assert len({e["raw"]["client"] for e in envs}) == 2


def test_get_status_of_a_request_and_404_for_unknown_ids(stack):
    fields = {**FORM, "description": "我叫刘建华，电话13907971234，小区门口路灯不亮。"}
    srid = stack.client.post_form(fields)[1][0]["service_request_id"]
    status, body = stack.client.get(f"/open311/requests/{srid}.json")
    assert status == 200
    (req,) = body
    assert req["service_request_id"] == srid
    assert (req["status"], req["status_notes"]) == ("open", "received")
    assert (req["service_code"], req["service_name"]) == ("urban_management", "城市管理")
    assert (req["lat"], req["long"]) == (25.831, 114.934)  # about 100 m: the street, not the door
    assert "13907971234" not in req["description"] and "139****1234" in req["description"]
    assert req["address"] == "章贡区红旗大道**号"
    public = json.dumps(body, ensure_ascii=False)
    for personal in ("刘建华", "建华", "13907971234", "liu.jianhua@example.com", "lamp.jpg", "88号"):
        assert personal not in public  # the status page is public: masked, no contact fields
    assert req["media_url"] is None and req["address_id"] is None
    stack.wait_for(1)
    assert stack.client.get(f"/open311/requests/{srid}.json")[1][0]["status"] == "open"  # published: still open

    status, body = stack.client.get("/open311/requests/0123456789abcdef.json")
    assert status == 404 and body[0]["code"] == 404 and "not found" in body[0]["description"]
    assert stack.client.get(f"/open311/requests/{srid}.xml")[0] == 404


def test_services_list_the_twelve_categories(stack):
    status, body = stack.client.get("/open311/services.json")
    assert status == 200
    assert [s["service_code"] for s in body] == list(CATEGORIES)
    names = {s["service_code"]: s["service_name"] for s in body}
    assert names["urban_management"] == "城市管理" and names["public_utilities"] == "水电气暖讯"
    assert all(s["metadata"] is False and s["type"] == "realtime" for s in body)


def test_resubmission_with_the_same_idempotency_key_is_one_request(stack):
    c = stack.client
    first = c.post_form(FORM, **{"Idempotency-Key": "9b2f6c1e-retry"})
    assert first[0] == 201
    srid = first[1][0]["service_request_id"]
    stack.wait_for(1)  # published already; the client retries anyway (it never saw the answer)
    again = c.post_json(FORM, **{"Idempotency-Key": "9b2f6c1e-retry"})  # same fields, as JSON this time
    assert again == (201, first[1])
    status, body = c.post_form({**FORM, "description": "另一件事"}, **{"Idempotency-Key": "9b2f6c1e-retry"})
    assert status == 422 and body[0]["code"] == 422

    # Without a key, the same content twice is two requests: a repeated report is a signal, not a duplicate.
    a, b = c.post_form(FORM)[1][0]["service_request_id"], c.post_form(FORM)[1][0]["service_request_id"]
    assert a != b
    values = stack.wait_for(3)
    time.sleep(0.5)
    ids = [v["id"] for v in stack.intake()]
    assert sorted(ids) == sorted({o311(srid), o311(a), o311(b)}) and len(values) == 3


def test_a_retry_whose_first_attempt_died_before_answering_is_not_doubled(stack):
    """Spooled, then killed before the index and the answer: the key's id collapses the retry in the spool."""
    connector = stack.connector
    fields = connector._validate(dict(FORM))
    srid = keyed_id("addr:127.0.0.1", "lost-answer")  # no api keys: the client is its address
    connector.spool([connector.to_envelope(srid, fields, None)])  # the first attempt got this far
    status, body = stack.client.post_form(FORM, **{"Idempotency-Key": "lost-answer"})
    assert status == 201 and body[0]["service_request_id"] == srid
    stack.wait_for(1)
    time.sleep(0.5)
    connector.drain()
    assert [v["id"] for v in stack.intake()] == [o311(srid)]


def test_push_only_connector_drains_in_run_once(runtime, bootstrap):
    st, service = make_stack(runtime, bootstrap)
    service.stop()
    try:
        c = st.connector
        assert c.poll_seconds == 0 and c.poll() == 0
        env = c.to_envelope("feedfacecafebeef", c._validate(dict(FORM)), None)
        spool_for(runtime).add(c.name, [env])  # as if pushed just before a restart
        assert c.run_once() == 1
        assert [v["id"] for v in st.intake()] == [o311("feedfacecafebeef")]
    finally:
        c.publisher.close()


def test_another_client_cannot_take_or_read_a_request_by_its_key(stack, keyed):
    """Idempotency keys are the client's own: another address (no api keys) or another api_key
    sending the same key makes a request of its own, and learns nothing of the first."""
    c = stack.client
    first = c.post_form(FORM, **{"Idempotency-Key": "1", "X-Forwarded-For": "203.0.113.10"})[1][0]
    again = c.post_form(FORM, **{"Idempotency-Key": "1", "X-Forwarded-For": "203.0.113.10"})[1][0]
    assert again == first  # the same client's retry
    other = {**FORM, "description": "另一位市民的诉求", "email": "someone@example.com"}
    status, body = c.post_form(other, **{"Idempotency-Key": "1", "X-Forwarded-For": "203.0.113.20"})
    assert status == 201 and body[0]["service_request_id"] != first["service_request_id"]  # not 422: no hint
    status, body = c.post_form(FORM, **{"Idempotency-Key": "1", "X-Forwarded-For": "203.0.113.20"})
    assert status == 422  # its own key, already used by itself for another body

    k = keyed.client
    one = k.post_form({**FORM, "api_key": "app-key-1"}, **{"Idempotency-Key": "order-7"})[1][0]
    two = k.post_form({**FORM, "api_key": "app-key-2"}, **{"Idempotency-Key": "order-7"})
    assert two[0] == 201 and two[1][0]["service_request_id"] != one["service_request_id"]


HOSTILE = [
    (b'{"service_code": "environment", "description": "x", "lat": ' + b"9" * 5000 + b', "long": 1}', "digits"),
    (b'{"service_code": "environment", "description": ' + b"1" * 5000 + b', "address_string": "a"}', "digits"),
    (b'{"service_code": "environment", "description": "x", "address_string": "a", "attribute": '
     + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deep"),
    (b'{"service_code": "environment", "description": {"text": "x"}, "address_string": "a"}', "must be a string"),
    (b'{"service_code": ["environment"], "description": "x", "address_string": "a"}', "must be a string"),
    (b'{"service_code": "environment", "description": "\\ud800", "address_string": "a"}', "lone surrogate"),
    (b'{"service_code": "environment", "description": "x", "lat": true, "long": 1}', "not a number"),
    (b'{"service_code": "environment", "description": "x", "lat": NaN, "long": 1}', "NaN is not a number"),
    (b'{"service_code": "environment", "description": "x", "address_string": "a", "attribute": {"k": {"a": 1}}}',
     "must be a string"),
    (b'{"service_code": "environment", "description": "x", "address_string": "a", "attribute": [1]}',
     "attribute must be an object"),
]


def test_hostile_json_gets_a_georeport_400_never_a_500(stack):
    for body, expect in HOSTILE:
        status, answer = stack.client.request("POST", "/open311/requests.json", body,
                                              {"Content-Type": "application/json"})
        assert status == 400, (expect, answer)
        assert len(answer) == 1 and answer[0]["code"] == 400 and expect in answer[0]["description"]
    assert spool_for(stack.runtime).count("open311") == 0 and stack.intake() == []


def test_a_burst_from_one_address_is_rate_limited(stack):
    """http.rate_limit_per_minute (120) with bursts of http.rate_limit_burst (30), per client
    address: of 60 posts at once about 30 are taken, the rest refused before the handler."""
    answers = [stack.client.post_form(FORM) for _ in range(60)]
    taken = [a for a in answers if a[0] == 201]
    assert 30 <= len(taken) <= 33 and {a[0] for a in answers} == {201, 429}
    assert stack.client.get("/open311/services.json")[0] == 429  # every public route shares the bucket
    assert stack.client.post_form(FORM, **{"X-Forwarded-For": "203.0.113.99"})[0] == 201  # another client
    assert spool_for(stack.runtime).count("open311") + len(stack.intake()) >= len(taken)
    assert len(stack.wait_for(len(taken) + 1)) == len(taken) + 1


def listed(stack, query: str = "") -> tuple[int, list]:
    return stack.client.get("/open311/requests.json" + (f"?{query}" if query else ""))


def test_the_list_of_requests_filters_and_shows_public_fields_only(stack, monkeypatch):
    c = stack.client
    lamp = c.post_form(FORM)[1][0]["service_request_id"]
    noise = c.post_json({"service_code": "environment", "description": "工地夜间施工噪音，联系电话13507970001",
                         "address_string": "于都县贡江镇长征大道", "phone": "13507970001"})[1][0]["service_request_id"]
    old = dict(_index_for(stack.runtime.state_dir).get("open311", lamp), srid="0ld0ld0ld0ld0ld0",
               requested="2026-01-05T10:00:00+08:00")
    _index_for(stack.runtime.state_dir).add(old)  # a request of long ago

    status, body = listed(stack)
    assert status == 200 and [r["service_request_id"] for r in body] == [noise, lamp]  # last 90 days, newest first
    text = json.dumps(body, ensure_ascii=False)
    for personal in ("13507970001", "13907971234", "liu.jianhua@example.com", "刘建华", "lamp.jpg"):
        assert personal not in text
    assert [r["service_request_id"] for r in listed(stack, "service_code=environment")[1]] == [noise]
    assert len(listed(stack, "service_code=environment,urban_management&status=open")[1]) == 2
    assert listed(stack, "status=closed") == (200, [])
    ids = listed(stack, f"service_request_id={lamp},0ld0ld0ld0ld0ld0&service_code=environment")[1]
    assert {r["service_request_id"] for r in ids} == {lamp, "0ld0ld0ld0ld0ld0"}  # ids override the rest
    january = listed(stack, "start_date=2026-01-01T00:00:00Z&end_date=2026-01-31T00:00:00%2B08:00")[1]
    assert [r["service_request_id"] for r in january] == ["0ld0ld0ld0ld0ld0"]
    assert listed(stack, "end_date=2026-01-01T00:00:00Z")[1] == []
    for bad in ("start_date=2026-01-01T00:00:00Z&end_date=2026-06-01T00:00:00Z", "start_date=yesterday",
                "status=pending", "end_date=2025-01-01T00:00:00Z&start_date=2026-01-01T00:00:00Z"):
        status, body = listed(stack, bad)
        assert status == 400 and body[0]["code"] == 400, bad
    monkeypatch.setattr(open311, "LIST_MAX", 1)
    assert len(listed(stack)[1]) == 1

