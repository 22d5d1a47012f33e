"""Each worker's /openapi.json, and the workers keeping to it: schemathesis generates
requests from the document and calls the ASGI app in-process, for the ingest worker
(WeChat and Open311 routes) and the ledger worker's case API. No answer may be a 5xx,
and every answer must be a documented status, of the documented content type and
schema. A few examples per operation, so it runs in seconds."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import write_config
from tests.sinks.test_ledger import routed
from wenzheng.config import load
from wenzheng.core.runtime import Runtime
from wenzheng.core.service import Limits, Service
from wenzheng.ingest.worker import IngestWorker
from wenzheng.sinks.accounts import Accounts
from wenzheng.sinks.api import TrackGuard
from wenzheng.sinks.api import routes as case_routes
from wenzheng.sinks.cases import Ledger

# The worker's own threads (scheduler jitter, back-off) use the random module while
# hypothesis draws; hypothesis warns about that, and the warning is not about this test.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")

CONFORMS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
TOKEN = "wzgz-callback-token"
ACCOUNTS = {"gz": {"appid": "wx1234567890abcdef", "token": TOKEN}}


def sign(case) -> None:
    """WeChat's query signature over a fresh timestamp and nonce (a stale or replayed one is
    refused before the body is read), so generated pushes get past the checks to the parser."""
    q = case.query
    q["timestamp"], q["nonce"] = str(int(time.time())), uuid.uuid4().hex
    q["signature"] = hashlib.sha1("".join(sorted([TOKEN, q["timestamp"], q["nonce"]])).encode()).hexdigest()


def exercise(op, mode: GenerationMode, checks: list, examples: int, params: dict,
             headers: dict | None = None, query: dict | None = None) -> None:
    """Requests generated for one operation; ``headers`` and ``query`` set over what was generated
    (a real token, a real check code), where the operation takes them."""
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(mode, path_parameters=params or None))
    def run(case):
        if op.path.startswith("/wechat/") and mode is GenerationMode.POSITIVE:
            sign(case)
        if headers and case.method == "POST":
            case.headers = {**(case.headers or {}), **headers}
        if query and case.method == "GET" and case.query is not None:
            case.query = {**case.query, **query}
        case.call_and_validate(checks=checks)

    try:
        run()
    except Unsatisfiable:  # no invalid request exists: a lone string path parameter, no body
        assert mode is GenerationMode.NEGATIVE, op.label


def conform(service: Service, examples: int = 15, **fixed: str) -> list[str]:
    """Run every operation of the service's document: valid requests against all checks,
    invalid ones (negative mode) for server errors only. ``fixed``: path parameters to
    use where an operation has them. Returns the operations' labels."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", service.app)
    labels = []
    for result in schema.get_all_operations():
        op = result.ok()
        labels.append(op.label)
        params = {k: v for k, v in fixed.items() if f"{{{k}}}" in op.path}
        exercise(op, GenerationMode.POSITIVE, CONFORMS, examples, params)
        exercise(op, GenerationMode.NEGATIVE, [not_a_server_error], examples, params)
    return labels


@pytest.fixture
def ingest_service(tmp_path, bootstrap):
    cfg = write_config(tmp_path, bootstrap)
    doc = yaml.safe_load((cfg / "channels.yaml").read_text(encoding="utf-8"))
    doc["channels"]["hotline"]["enabled"] = False
    doc["channels"]["wechat"] = {"enabled": True, "api_base": "http://127.0.0.1:9", "accounts": ACCOUNTS}
    doc["channels"]["webform"] = {"enabled": True, "open311": True}
    (cfg / "channels.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    runtime = Runtime(load(cfg)).connect()
    worker = IngestWorker(runtime)
    service = Service("127.0.0.1", 0, "ingest", Limits(rate_limit_per_minute=0))  # every case reaches its handler
    service.health = worker.health
    service.add(*worker.routes())
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield service
    finally:
        worker.stop()
        thread.join(20)
        runtime.journal.close()


def test_the_ingest_worker_keeps_to_its_openapi_document(ingest_service):
    from starlette.testclient import TestClient

    with TestClient(ingest_service.app) as client:  # a request that exists, for GET /open311/requests/{id}.json
        taken = client.post("/open311/requests.json", data={"service_code": "environment", "description": "噪音扰民",
                                                             "address_string": "于都县贡江镇"})
    labels = conform(ingest_service, account="gz", id=taken.json()[0]["service_request_id"])
    assert {"GET /wechat/{account}", "POST /wechat/{account}", "POST /open311/requests.json",
            "GET /open311/requests.json", "GET /open311/requests/{id}.json", "GET /open311/services.json",
            "GET /healthz"} <= set(labels)


def case_service(ledger: Ledger, accounts: Accounts) -> Service:
    service = Service("127.0.0.1", 0, "ledger")
    service.add(*case_routes(ledger, accounts, TrackGuard(1e6, 10**6)))
    return service


def test_the_case_api_keeps_to_its_openapi_document(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.sqlite3", prefix="GZ")
    try:
        tracking = ledger.record(routed("wechat:1", "唐江镇幸福路的路灯坏了"))["tracking_no"]
        accounts = Accounts(ledger.engine)
        service = case_service(ledger, accounts)
        assert {"GET /cases/{tracking_no}", "POST /cases/{tracking_no}/{action}"} <= set(conform(service))
        # a case that exists, its check code, and the office's token: claims, replies, closes
        token = accounts.new_token("360703-cgj")
        schema = schemathesis.openapi.from_asgi("/openapi.json", service.app)
        for result in schema.get_all_operations():
            op = result.ok()
            if op.path.startswith("/cases/"):
                fixed = {"tracking_no": tracking}
                exercise(op, GenerationMode.POSITIVE, CONFORMS, 15, fixed,
                         {"Authorization": f"Bearer {token}"}, {"code": ledger.get(tracking)["check_code"]})
    finally:
        ledger.dispose()


def test_the_document_describes_routes_limits_and_parameters():
    ledger = Ledger("sqlite://", prefix="GZ")
    ledger_service = case_service(ledger, Accounts(ledger.engine))
    from starlette.testclient import TestClient

    with TestClient(ledger_service.app) as client:
        doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.") and doc["info"]["title"] == "wenzheng ledger worker"
    lookup, action = doc["paths"]["/cases/{tracking_no}"]["get"], doc["paths"]["/cases/{tracking_no}/{action}"]["post"]
    assert lookup["summary"] and {"200", "404", "429"} <= set(lookup["responses"])  # public: rate-limited
    assert {p["name"] for p in lookup["parameters"]} == {"tracking_no", "code"}  # the check code
    assert "429" not in action["responses"] and {"401", "403", "408", "413"} <= set(action["responses"])
    params = {p["name"]: p for p in action["parameters"]}
    assert params["action"]["schema"]["enum"] == ["claim", "reply", "close", "reopen"]
    assert params["Authorization"]["in"] == "header" and params["Authorization"]["required"] is True
    assert params["tracking_no"]["in"] == "path" and params["tracking_no"]["required"] is True
    assert "satisfaction" in action["requestBody"]["content"]["application/json"]["schema"]["properties"]
