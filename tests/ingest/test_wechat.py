"""The WeChat channel against the real embedded broker and a fake WeChat on 127.0.0.1.

Pushes go through an in-process ingest worker (its scheduler, drainer threads and
HTTP service); the poll, the Kafka-down and the back-off tests drive a connector
directly so their timing is theirs alone.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import subprocess
import sys
import threading
import time
from datetime import datetime
from urllib.parse import urlencode

import pytest
import yaml

from tests.conftest import TEST_KEY, expected_id, free_port, write_config
from tests.kafka_util import read_values
from wenzheng.config import load
from wenzheng.core import envelope
from wenzheng.core.delivery import Publisher
from wenzheng.core.errors import TransientError
from wenzheng.core.kafka import producer as make_producer
from wenzheng.core.privacy import pseudonym
from wenzheng.core.runtime import Runtime
from wenzheng.core.service import Service
from wenzheng.ingest.base import spool_for
from wenzheng.ingest.fakes.wechat import (
    MSGLIST_PATH,
    TOKEN_PATH,
    FakeWeChat,
    PushClient,
    event_xml,
    image_xml,
    location_xml,
    text_xml,
    voice_xml,
)
from wenzheng.ingest.wechat import WeChatAPIError, WeChatConnector
from wenzheng.ingest.worker import IngestWorker

APPID, APPID_AES, APPID_POLL = "wx1234567890abcdef", "wxfedcba0987654321", "wx00112233445566aa"
TOKEN = "wzgz-callback-token"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters, as in WeChat's samples
SECRET = "0123456789abcdef0123456789abcdef"
OPENID = "oDF3iY9ffA-hqb2vVvbr7qxf6A0Q"
ACCOUNTS = {
    "gz": {"appid": APPID, "token": TOKEN, "name": "赣州问政"},
    "gzaes": {"appid": APPID_AES, "token": TOKEN, "encoding_aes_key": AES_KEY},
}


def wx(appid: str, msg_id: object) -> str:
    """The id of the push ``msg_id`` to account ``appid``."""
    return expected_id("wechat", f"{appid}:{msg_id}")


def wechat_config(directory, bootstrap, accounts, api_base="http://127.0.0.1:9", poll_seconds=3600, **wechat):
    """The test configuration (conftest.write_config) with channels.wechat added (``wechat``:
    more of its settings), hotline off."""
    cfg = write_config(directory, bootstrap)
    doc = yaml.safe_load((cfg / "channels.yaml").read_text(encoding="utf-8"))
    doc["channels"]["hotline"]["enabled"] = False
    doc["channels"]["wechat"] = {"enabled": True, "api_base": api_base, "poll_seconds": poll_seconds,
                                 "accounts": accounts, **wechat}
    (cfg / "channels.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return cfg


def wait_for(predicate, timeout=15.0, what="it"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Stack:
    def __init__(self, bootstrap, runtime, service):
        self.bootstrap, self.runtime, self.service = bootstrap, runtime, service
        base = f"http://127.0.0.1:{service.port}"
        self.plain = PushClient(f"{base}/wechat/gz", TOKEN, APPID)
        self.aes = PushClient(f"{base}/wechat/gzaes", TOKEN, APPID_AES, AES_KEY)

    def intake(self, *ids):
        by_id = {}
        for v in read_values(self.bootstrap, self.runtime.topics.intake):
            by_id.setdefault(v["id"], []).append(v)
        return {i: by_id.get(i, []) for i in ids} if ids else by_id

    def one(self, msg_id):
        return wait_for(lambda: self.intake(msg_id)[msg_id], what=msg_id)[0]


@contextlib.contextmanager
def ingest_worker(cfg):
    """A real ingest worker in this process (scheduler, drainers, HTTP routes on a free
    port): yields (runtime, service), stops everything after."""
    runtime = Runtime(load(cfg)).connect()
    worker = IngestWorker(runtime)
    service = Service("127.0.0.1", 0, "ingest")
    service.add(*worker.routes())
    service.start()
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield runtime, service
    finally:
        worker.stop()
        thread.join(20)
        service.stop()
        runtime.journal.close()


@pytest.fixture(scope="module")
def stack(bootstrap, tmp_path_factory):
    """A real ingest worker with two push accounts."""
    with ingest_worker(wechat_config(tmp_path_factory.mktemp("wechat"), bootstrap, ACCOUNTS)) as (runtime, service):
        yield Stack(bootstrap, runtime, service)


def test_url_verification_echoes_and_refuses_forgeries(stack):
    assert stack.plain.verify("5837397520665436492") == (200, b"5837397520665436492")
    assert stack.plain.verify(forge=True)[0] == 403
    assert stack.aes.verify("42")[0] == 200  # official accounts verify in plain even in safe mode


def test_plain_text_lands_on_intake_with_openid_only_in_pii(stack):
    sent = "南康区唐江镇幸福路的路灯坏了一个月，电话13907971234，请尽快修理。"
    status, body = stack.plain.push(text_xml(sent, 6221731580000000001, create_time=1763774103))
    assert status == 200 and "已收到" in body.decode()  # the plain passive receipt
    env = stack.one(wx(APPID, 6221731580000000001))
    assert env["text"] == sent and env["channel"] == "wechat" and env["account"] == "gz"
    assert env["posted_at"] == "2025-11-22T09:15:03+08:00"  # CreateTime, Asia/Shanghai
    assert env["pii"] == {"openid": OPENID}
    assert env["author"] == pseudonym(TEST_KEY.encode(), "wechat", OPENID)
    assert env["raw"]["Content"] == sent  # the pushed XML as a dict: intake only, like pii
    assert OPENID not in json.dumps({k: v for k, v in env.items() if k not in ("pii", "raw")})
    assert OPENID not in json.dumps(envelope.masked(env), ensure_ascii=False)


def test_safe_mode_text_is_decrypted_and_answered_encrypted(stack):
    sent = "章贡区水东镇自来水发黄已经三天了"
    status, body = stack.aes.push(text_xml(sent, 6221731580000000002), encrypt=True)
    assert status == 200 and b"<Encrypt>" in body and "已收到".encode() not in body
    reply = stack.aes.decrypt_reply(body)
    assert reply["MsgType"] == "text" and reply["ToUserName"] == OPENID and "已收到" in reply["Content"]
    env = stack.one(wx(APPID_AES, 6221731580000000002))
    assert env["text"] == sent and env["account"] == "gzaes" and env["pii"] == {"openid": OPENID}


def test_image_voice_and_location(stack):
    pic = "http://mmbiz.qpic.cn/mmbiz_jpg/fake/0"
    assert stack.plain.push(image_xml(pic, "media-img-1", 6221731580000000003))[0] == 200
    assert stack.aes.push(voice_xml("media-voice-1", "小区门口垃圾三天没人清运", 6221731580000000004),
                          encrypt=True)[0] == 200
    assert stack.plain.push(location_xml(25.831, 114.933, "江西省赣州市章贡区红旗大道", 6221731580000000005))[0] == 200

    image = stack.one(wx(APPID, 6221731580000000003))
    assert image["attachments"] == [{"kind": "image", "url": pic, "media_id": "media-img-1"}]
    assert image["text"] == "[图片]"
    voice = stack.one(wx(APPID_AES, 6221731580000000004))
    assert voice["text"] == "小区门口垃圾三天没人清运"
    assert voice["attachments"] == [{"kind": "voice", "media_id": "media-voice-1", "format": "amr"}]
    place = stack.one(wx(APPID, 6221731580000000005))
    assert place["location"] == {"text": "江西省赣州市章贡区红旗大道", "lat": 25.831, "lon": 114.933, "scale": "15"}
    assert "红旗大道" in place["text"]


def test_events_are_acknowledged_not_published(stack):
    follower = "oEventOnly-subscriber-000000"
    for xml in (event_xml("subscribe", from_user=follower), event_xml("CLICK", "V1001_TODAY", from_user=follower),
                event_xml("unsubscribe", from_user=follower)):
        assert stack.plain.push(xml, openid=follower) == (200, b"success")
    assert stack.plain.push(text_xml("事件之后的留言", 6221731580000000006))[0] == 200
    stack.one(wx(APPID, 6221731580000000006))  # published after the events: they had their chance
    assert all(v["pii"].get("openid") != follower for vs in stack.intake().values() for v in vs)


def test_forged_and_unsigned_pushes_are_refused(stack):
    assert stack.plain.push(text_xml("伪造", 6221731580000000007), forge=True)[0] == 403
    assert stack.plain.push(text_xml("无签名", 6221731580000000008), unsigned=True)[0] == 403
    assert stack.aes.push(text_xml("伪造密文", 6221731580000000009), encrypt=True, forge="msg")[0] == 403
    assert stack.aes.push(text_xml("明文冒充", 6221731580000000010), encrypt=False, forge=True)[0] == 403
    assert stack.plain.push(text_xml("之后的真留言", 6221731580000000011))[0] == 200
    stack.one(wx(APPID, 6221731580000000011))
    ids = stack.intake(*(wx(a, f"62217315800000000{n}") for a in (APPID, APPID_AES) for n in ("07", "08", "09", "10")))
    assert not any(ids.values())


def test_a_retried_push_lands_once(stack):
    xml = text_xml("同一条消息，微信重试了三次", 6221731580000000012)
    for _ in range(3):
        assert stack.plain.push(xml)[0] == 200
    msg_id = wx(APPID, 6221731580000000012)
    stack.one(msg_id)
    assert stack.aes.push(text_xml("加密的也一样", 6221731580000000013), encrypt=True)[0] == 200
    stack.one(wx(APPID_AES, 6221731580000000013))
    assert stack.plain.push(xml)[0] == 200  # a late retry, after it was published: the journal knows it
    time.sleep(1.0)
    assert len(stack.intake(msg_id)[msg_id]) == 1


def dead_letters(stack, account):
    return [v for v in read_values(stack.bootstrap, stack.runtime.topics.deadletter)
            if v["stage"] == f"ingest.wechat.{account}"]


def test_a_plaintext_push_to_a_safe_mode_account_is_refused(stack):
    """The account's configuration fixes its mode: a plain push, however well signed, is not
    taken by a safe-mode account, with or without encrypt_type in the query."""
    kept = len(dead_letters(stack, "gzaes"))
    forged = text_xml("冒充任意用户的明文留言", 6221731580000000300, from_user="oAnyCitizen-chosen-by-attacker")
    assert stack.aes.push(forged)[0] == 403  # signed in plain mode, encrypt_type left out
    body = forged.replace("</xml>", "<Encrypt><![CDATA[bm90IGEgY2lwaGVydGV4dA==]]></Encrypt></xml>")
    assert stack.aes.push(body)[0] == 403  # an <Encrypt> without msg_signature
    ts, nonce = str(int(time.time())), "says-aes"
    query = {"signature": stack.aes._sign(ts, nonce), "timestamp": ts, "nonce": nonce, "encrypt_type": "aes"}
    assert stack.aes._request("POST", query, forged.encode())[0] == 403  # says aes, sends plain text
    to_plain = PushClient(stack.plain.url, TOKEN, APPID, AES_KEY)  # a plain account has no key to open it
    assert to_plain.push(text_xml("给明文账号的密文", 6221731580000000301), encrypt=True)[0] == 403
    assert stack.aes.push(text_xml("之后的真留言", 6221731580000000302), encrypt=True)[0] == 200
    stack.one(wx(APPID_AES, 6221731580000000302))
    assert not stack.intake(wx(APPID_AES, 6221731580000000300))[wx(APPID_AES, 6221731580000000300)]
    assert len(dead_letters(stack, "gzaes")) == kept  # refused, not kept


def test_replayed_and_stale_pushes_are_refused(stack):
    now = int(time.time())
    first = text_xml("第一次推送", 6221731580000000310)
    assert stack.plain.push(first, timestamp=now, nonce="replay-1")[0] == 200
    swapped = text_xml("换了正文的重放", 6221731580000000311, from_user="oSomeoneElse-openid")
    assert stack.plain.push(swapped, timestamp=now, nonce="replay-1")[0] == 403  # plain: the body is not signed
    assert stack.aes.push(text_xml("密文", 6221731580000000312), encrypt=True, timestamp=now, nonce="replay-2")[0] == 200
    assert stack.aes.push(text_xml("密文", 6221731580000000312), encrypt=True, timestamp=now, nonce="replay-2")[0] == 403
    old = now - 301  # channels.wechat.max_age_seconds: 300 by default
    assert stack.plain.push(text_xml("五分钟前签的", 6221731580000000313), timestamp=old)[0] == 403
    assert stack.aes.push(text_xml("来自未来", 6221731580000000314), encrypt=True, timestamp=now + 400)[0] == 403
    assert stack.plain.push(text_xml("之后的真留言", 6221731580000000315))[0] == 200
    stack.one(wx(APPID, 6221731580000000315))
    ids = stack.intake(*(wx(a, f"62217315800000003{n}") for a in (APPID, APPID_AES) for n in (11, 13, 14)))
    assert not any(ids.values())


UNREADABLE = [
    (b"<xml><ToUserName><![CDATA[gh_wzgz]]></ToUserName><Content>13907971234", "no element found"),
    (text_xml("重复的字段", 6221731580000000320).replace("</xml>", "<Content>第二个内容13907971234</Content></xml>"),
     "duplicated element <Content>"),
    (text_xml("嵌套", 6221731580000000321).replace("</xml>", "<Content2><b>13907971234</b></Content2></xml>"),
     "nested element <Content2>"),
    (text_xml("x", 6221731580000000322).replace("<MsgId>6221731580000000322</MsgId>", ""), "lacks MsgId"),
    (b'<!DOCTYPE xml [<!ENTITY a "13907971234">]><xml><Content>&a;</Content></xml>', "DTDForbidden"),
]


@pytest.mark.parametrize("client", ["plain", "aes"])
def test_unreadable_pushes_after_a_valid_signature_get_400_and_a_masked_dead_letter(stack, client):
    account = {"plain": "gz", "aes": "gzaes"}[client]
    before = len(dead_letters(stack, account))
    for body, _ in UNREADABLE:
        status, answer = getattr(stack, client).push(body, encrypt=client == "aes")
        assert (status, answer) == (400, b"unreadable push: dead-lettered")  # never a 500
    letters = wait_for(lambda: len(got := dead_letters(stack, account)) >= before + len(UNREADABLE) and got,
                       what="the dead letters")
    assert len(letters) == before + len(UNREADABLE)
    reasons = sorted(v["reason"] for v in letters)
    for _, expect in UNREADABLE:
        assert any(expect in r for r in reasons), (expect, reasons)
    for letter in letters:
        assert letter["reason"].startswith("unreadable push: ")
        assert "13907971234" not in json.dumps(letter, ensure_ascii=False)
        assert OPENID not in json.dumps(letter) and letter["excerpt"] == ""
        assert (stack.runtime.state_dir / letter["source"]["quarantine"]).exists()


def test_a_signed_push_our_key_cannot_open_is_dead_lettered(stack):
    """Signed with the token but encrypted with another key (a wrong encoding_aes_key in the config)."""
    other_key = PushClient(stack.aes.url, TOKEN, APPID_AES, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG")
    assert other_key.push(text_xml("换过密钥", 6221731580000000325), encrypt=True) == \
        (400, b"unreadable push: dead-lettered")
    letter = wait_for(lambda: [v for v in dead_letters(stack, "gzaes") if "cannot decrypt" in v["reason"]],
                      what="the dead letter")[0]
    assert "check encoding_aes_key" in letter["reason"] and letter["excerpt"] == ""


def test_an_oversized_push_is_refused_and_a_near_limit_one_does_not_hold_back_the_rest(stack):
    """The HTTP layer refuses a body over http.max_body_bytes (1 MiB) before reading it; one
    just under is taken and cut to fit a record, and the 20 pushes after it are published at once."""
    conn = http.client.HTTPConnection("127.0.0.1", stack.service.port, timeout=10)
    ts, nonce = str(int(time.time())), "oversized"
    query = urlencode({"signature": stack.plain._sign(ts, nonce), "timestamp": ts, "nonce": nonce})
    conn.putrequest("POST", f"/wechat/gz?{query}")
    conn.putheader("Content-Length", str(10 << 20))  # a signed 10 MB push: answered before it is sent
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()
    huge = text_xml("长" * 349_000, 6221731580000000331)  # 3 bytes a character: just under 1 MiB
    assert 1_000_000 < len(huge.encode()) < 1 << 20
    assert stack.plain.push(huge)[0] == 200
    t0 = time.monotonic()
    for i in range(20):
        assert stack.plain.push(text_xml(f"大消息之后的第{i}条", 6221731580000000340 + i))[0] == 200
    ids = [wx(APPID, 6221731580000000340 + i) for i in range(20)]
    wait_for(lambda: all(stack.intake(*ids).values()), timeout=10, what="the 20 pushes after the large one")
    assert time.monotonic() - t0 < 10
    big = stack.one(wx(APPID, 6221731580000000331))
    assert big["text"].endswith("…[截断：原文 349000 字]")


def test_a_wenzheng_worker_ingest_process_serves_the_callback(bootstrap, tmp_path):
    """`wenzheng worker ingest` as its own process, answering a safe-mode push and publishing it."""
    cfg = wechat_config(tmp_path, bootstrap, ACCOUNTS)
    port = free_port()
    code = ("from wenzheng.app.cli import main; "
            f"raise SystemExit(main(['worker', 'ingest', '--config', {str(cfg)!r}, '--port', '{port}']))")
    with open(tmp_path / "ingest.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        client = PushClient(f"http://127.0.0.1:{port}/wechat/gzaes", TOKEN, APPID_AES, AES_KEY)

        def push():
            try:
                return client.push(text_xml("信丰县嘉定镇路灯不亮", 6221731580000000200), encrypt=True)
            except OSError:
                return None  # not listening yet

        status, body = wait_for(push, 30, "the worker's HTTP service")
        assert status == 200 and "已收到" in client.decrypt_reply(body)["Content"]
        runtime = Runtime(load(cfg)).connect(create_topics=False)
        wait_for(lambda: read_values(bootstrap, runtime.topics.intake), what="the published push")
        assert [v["id"] for v in read_values(bootstrap, runtime.topics.intake)] == [wx(APPID_AES, 6221731580000000200)]
    finally:
        proc.terminate()
        try:
            assert proc.wait(20) == 0  # SIGTERM: a clean stop
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# --- Kafka down --------------------------------------------------------------------------


class Flaky:
    """A publisher whose broker is unreachable until ``down`` is cleared."""

    def __init__(self, inner: Publisher):
        self.inner, self.down, self.attempts = inner, True, 0

    def publish(self, outs, timeout=30.0):
        self.attempts += 1
        if self.down:
            raise TransientError("Kafka did not acknowledge: broker unreachable")
        return self.inner.publish(outs, timeout)

    def close(self, producer=True):
        self.inner.close(producer)


def test_pushes_while_kafka_is_down_are_kept_and_published_after(bootstrap, tmp_path):
    cfg = wechat_config(tmp_path, bootstrap, {"gz": ACCOUNTS["gz"]})
    runtime = Runtime(load(cfg)).connect()
    (conn,) = WeChatConnector.from_config(runtime, lambda name: Flaky(Publisher(
        runtime.settings, make_producer(runtime.settings), runtime.journal, f"ingest.{name}")))
    service = Service("127.0.0.1", 0, "ingest")
    service.add(*conn.routes())
    service.start()
    try:
        client = PushClient(f"http://127.0.0.1:{service.port}/wechat/gz", TOKEN, APPID)
        for i in range(3):
            assert client.push(text_xml(f"断网期间的第{i}条留言", 6221731580000000100 + i))[0] == 200
        assert spool_for(runtime).count("wechat.gz") == 3
        wait_for(lambda: conn.publisher.attempts >= 1, what="the drainer's attempt")
        assert conn.run_once() == 0 and conn._resume_at > time.monotonic()  # backing off, not spinning
        assert read_values(bootstrap, runtime.topics.intake) == []

        conn.publisher.down = False
        assert conn.drain() == 3
        assert client.push(text_xml("断网期间的第0条留言", 6221731580000000100))[0] == 200  # retry
        conn.drain()
        ids = sorted(v["id"] for v in read_values(bootstrap, runtime.topics.intake))
        assert ids == sorted(wx(APPID, 6221731580000000100 + i) for i in range(3))
        assert spool_for(runtime).count("wechat.gz") == 0
    finally:
        service.stop()
        conn.publisher.close()
        runtime.journal.close()


# --- poll --------------------------------------------------------------------------------


@pytest.fixture
def fake():
    with FakeWeChat(APPID_POLL, SECRET, lifetime=60) as f:
        yield f


@pytest.fixture
def poller(bootstrap, tmp_path, fake):
    accounts = {"gzpoll": {"appid": APPID_POLL, "token": TOKEN, "secret": SECRET, "poll": True}}
    runtime = Runtime(load(wechat_config(tmp_path, bootstrap, accounts, api_base=fake.url, poll_seconds=60))).connect()
    (conn,) = WeChatConnector.from_config(runtime, lambda name: Publisher(
        runtime.settings, make_producer(runtime.settings), runtime.journal, f"ingest.{name}"))
    yield conn
    conn.publisher.close()
    runtime.journal.close()


def test_poll_backfills_citizen_records_with_paging_and_token_refresh(poller, fake, bootstrap):
    assert poller.poll_seconds == 60
    now = int(time.time()) - 120
    poller.BACKFILL, poller.PAGE = 2 * 86400, 3  # two one-day windows, pages of three
    citizen = [(f"oUser{i:02d}-openid-xxxxxxxxxxxx", f"第{i}条：水南路积水严重", now - 150000 + i * 20000) for i in range(7)]
    for openid, text, when in citizen:
        fake.add_record(openid, text, when, opercode=2003)
        fake.add_record(openid, "您好，客服为您服务", when + 5, opercode=2002)  # the agent: not published
    fake.token_uses = 2  # every token serves two pages, then answers 42001
    fake.fail(MSGLIST_PATH, 40001)  # and one spurious "invalid credential"

    poller.run_once()
    values = read_values(bootstrap, poller.runtime.topics.intake)
    assert sorted(v["text"] for v in values) == sorted(t for _, t, _ in citizen)
    assert len({v["id"] for v in values}) == len(values) == 7
    for v in values:
        openid, _, when = next(c for c in citizen if c[1] == v["text"])
        assert v["pii"] == {"openid": openid} and openid not in v["id"]
        assert v["posted_at"] == envelope.iso(datetime.fromtimestamp(when, envelope.TZ))
    assert fake.count(TOKEN_PATH) >= 3  # refreshed on 40001 and on every 42001
    state = poller.checkpoint.state
    assert state["msgid"] == 1 and int(time.time()) - 62 - 5 <= state["start"] <= int(time.time()) - 60

    poller.checkpoint.state["start"] -= 2 * 86400  # reconciliation re-reads both days: nothing doubled
    poller.run_once()
    assert len(read_values(bootstrap, poller.runtime.topics.intake)) == 7


def test_rate_limits_back_off_without_a_tight_loop(poller, fake):
    fake.fail(MSGLIST_PATH, *[45009] * 100)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3.0:
        poller.run_once()
        time.sleep(0.02)
    assert 1 <= fake.count(MSGLIST_PATH, since=t0) <= 3  # ~150 calls, two or three reached WeChat

    fake._faults.clear()
    for fault in (-1, "http:500"):
        fake.fail(MSGLIST_PATH, fault)
        with pytest.raises(TransientError):
            poller.poll()


def test_fake_enforces_the_api_limits(poller, fake):
    poller.WINDOW = 2 * 86400  # more than the API allows
    poller.BACKFILL = 2 * 86400
    with pytest.raises(WeChatAPIError, match="65417"):
        poller.poll()
    poller._access_token = None
    fake.secret = "rotated"  # the AppSecret was reset on the platform
    with pytest.raises(WeChatAPIError, match="40125"):
        poller.poll()

