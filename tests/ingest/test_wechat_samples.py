"""WeChat's own published payloads, byte for byte, through a real ingest worker.

Nobody on the team wrote these: the safe-mode sample is the one in WeChat's
message encryption guide (消息加解密说明) and its sample code (WXBizMsgCrypt:
token ``spamtest``, appid ``wx2c2769f8efd9abc2``), signed in 2014 — so this
worker is configured with a ``channels.wechat.max_age_seconds`` of forty years
(a deployment keeps the default five minutes); the plain ones are the
examples of the 接收普通消息 / 接收事件推送 pages. Every plain sample there
carries the same placeholder MsgId (1234567890123456): WeChat tells developers
to de-duplicate by MsgId, so each sample goes to an account of its own here.
"""

from __future__ import annotations

import hashlib

import pytest

from tests.ingest.test_wechat import ingest_worker, wait_for, wechat_config, wx
from tests.kafka_util import read_values
from wenzheng.ingest.fakes.wechat import PushClient

SAMPLE_TOKEN, SAMPLE_APPID = "spamtest", "wx2c2769f8efd9abc2"
SAMPLE_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
SAMPLE_QUERY = {"timestamp": "1409735669", "nonce": "1320562132",
                "msg_signature": "5d197aaffba7e9b25a30732f161a50dee96bd5fa"}
SAMPLE_ENCRYPTED = (
    "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]>"
    "</FromUserName><CreateTime>1409735668</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[abcdteT]]>"
    "</Content><MsgId>6054768590064713728</MsgId><Encrypt><![CDATA[hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655Hu"
    "D0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZky"
    "yXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbG"
    "py0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9eh"
    "VsNPfUM669WuMyVWQLCzpu9GhglF2PE=]]></Encrypt></xml>"
)

DOC = "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[fromUser]]></FromUserName>" \
      "<CreateTime>1348831860</CreateTime>{}</xml>"
DOC_SAMPLES = {
    "text": "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[this is a test]]></Content>"
            "<MsgId>1234567890123456</MsgId><MsgDataId>xxxx</MsgDataId><Idx>xxxx</Idx>",
    "image": "<MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[this is a url]]></PicUrl>"
             "<MediaId><![CDATA[media_id]]></MediaId><MsgId>1234567890123456</MsgId>",
    "voice": "<MsgType><![CDATA[voice]]></MsgType><MediaId><![CDATA[media_id]]></MediaId>"
             "<Format><![CDATA[Format]]></Format><Recognition><![CDATA[腾讯微信团队]]></Recognition>"
             "<MsgId>1234567890123456</MsgId>",
    "location": "<MsgType><![CDATA[location]]></MsgType><Location_X>23.134521</Location_X>"
                "<Location_Y>113.358803</Location_Y><Scale>20</Scale><Label><![CDATA[位置信息]]></Label>"
                "<MsgId>1234567890123456</MsgId>",
    "link": "<MsgType><![CDATA[link]]></MsgType><Title><![CDATA[公众平台官网链接]]></Title>"
            "<Description><![CDATA[公众平台官网链接]]></Description><Url><![CDATA[url]]></Url>"
            "<MsgId>1234567890123456</MsgId>",
}
DOC_EVENT = "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event>"
DOC_TOKEN = "wz-doc-token"


def doc_appid(kind: str) -> str:
    return "wxdoc" + hashlib.sha1(kind.encode()).hexdigest()[:13]


@pytest.fixture(scope="module")
def worker_url(bootstrap, tmp_path_factory):
    accounts = {"sample": {"appid": SAMPLE_APPID, "token": SAMPLE_TOKEN, "encoding_aes_key": SAMPLE_AES_KEY}}
    accounts |= {f"doc{kind}": {"appid": doc_appid(kind), "token": DOC_TOKEN} for kind in DOC_SAMPLES}
    cfg = wechat_config(tmp_path_factory.mktemp("samples"), bootstrap, accounts, max_age_seconds=40 * 365 * 86400)
    with ingest_worker(cfg) as (runtime, service):
        yield f"http://127.0.0.1:{service.port}", runtime


def post(url: str, query: dict, body: str) -> tuple[int, bytes]:
    """POST exactly this query and body (PushClient signs its own; these come signed)."""
    return PushClient(url, "", "")._request("POST", query, body.encode())


def signed(token: str, timestamp: str, nonce: str) -> dict:
    signature = hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()
    return {"signature": signature, "timestamp": timestamp, "nonce": nonce}


def intake(bootstrap, runtime, msg_id):
    return wait_for(lambda: [v for v in read_values(bootstrap, runtime.topics.intake) if v["id"] == msg_id],
                    what=msg_id)


def test_the_encryption_guides_sample_is_decrypted_and_published(worker_url, bootstrap):
    url, runtime = worker_url
    query = SAMPLE_QUERY | {"signature": "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a", "encrypt_type": "aes",
                            "openid": "oyORnuP8q7ou2gfYjqLzSIWZf0rs"}
    assert signed(SAMPLE_TOKEN, SAMPLE_QUERY["timestamp"], SAMPLE_QUERY["nonce"])["signature"] == query["signature"]
    status, body = post(f"{url}/wechat/sample", query, SAMPLE_ENCRYPTED)
    assert status == 200 and b"<Encrypt>" in body
    (env,) = intake(bootstrap, runtime, wx(SAMPLE_APPID, 6054768590064713728))
    assert env["text"] == "abcdteT" and env["posted_at"] == "2014-09-03T17:14:28+08:00"
    assert env["pii"] == {"openid": "oyORnuP8q7ou2gfYjqLzSIWZf0rs"}

    spoiled = query | {"msg_signature": "5d197aaffba7e9b25a30732f161a50dee96bd5fb"}
    assert post(f"{url}/wechat/sample", spoiled, SAMPLE_ENCRYPTED)[0] == 403


def test_the_message_pages_samples_become_envelopes(worker_url, bootstrap):
    url, runtime = worker_url
    for kind, fields in DOC_SAMPLES.items():
        status, _ = post(f"{url}/wechat/doc{kind}", signed(DOC_TOKEN, "1348831860", "doc" + kind), DOC.format(fields))
        assert status == 200, kind
    assert post(f"{url}/wechat/doctext", signed(DOC_TOKEN, "1348831861", "event"), DOC.format(DOC_EVENT)) == \
        (200, b"success")
    got = {kind: intake(bootstrap, runtime, wx(doc_appid(kind), 1234567890123456))[0] for kind in DOC_SAMPLES}
    assert got["text"]["text"] == "this is a test"
    assert got["image"]["attachments"] == [{"kind": "image", "url": "this is a url", "media_id": "media_id"}]
    assert got["voice"]["text"] == "腾讯微信团队"
    assert got["location"]["location"] == {"text": "位置信息", "lat": 23.134521, "lon": 113.358803, "scale": "20"}
    assert got["link"]["text"] == "公众平台官网链接"  # the title, once: the sample repeats it as description
    assert {e["posted_at"] for e in got.values()} == {"2012-09-28T19:31:00+08:00"}
    assert all(e["pii"] == {"openid": "fromUser"} for e in got.values())
