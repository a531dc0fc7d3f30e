"""The ATLAS sandbox behaves like the guide and CONTRACT.md describe ATLAS, over real HTTP."""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import jwt
import pytest
import requests
from stdnum import bic as bic_check
from stdnum import iban as iban_check
from stdnum.eu import vat as vat_check
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from integration import wire
from integration.sandbox import chart
from integration.sandbox.atlas_seed import (
    BROKEN_KINDS,
    ORDER_STATUSES,
    STATUSES_WITH_ERP_CODE,
    STATUSES_WITH_INVOICE,
    build_atlas_dataset,
)
from integration.sandbox.faults import FaultConfig
from integration.sandbox.server import SandboxServer

USERNAME = "ledger-sync"
PASSWORD = "sandbox-password"


# --- helpers -------------------------------------------------------------------------------------


def get_token(url: str, session: requests.Session | None = None) -> str:
    sender = session or requests
    response = sender.post(
        f"{url}/api/token", json={"username": USERNAME, "password": PASSWORD}, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]["token"]


def call(
    url: str,
    path: str,
    data: Any,
    token: str | None,
    session: requests.Session | None = None,
) -> requests.Response:
    sender = session or requests
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return sender.post(f"{url}{path}", data=wire.dumps({"data": data}), headers=headers, timeout=30)


def body(response: requests.Response) -> Any:
    return wire.loads(response.content)


def ids(response: requests.Response) -> list[int]:
    return [record["id"] for record in body(response)["data"]]


@pytest.fixture
def token(atlas_sandbox) -> str:
    return get_token(atlas_sandbox.url)


class WebhookReceiver:
    """A loopback endpoint that records what it receives and answers `status`."""

    def __init__(self, status: int = 200):
        self.status = status
        self.received: list[tuple[bytes, dict[str, str]]] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        with self._lock:
            self.received.append((request.get_data(), dict(request.headers)))
        return Response("{}", status=self.status, content_type="application/json")(
            environ, start_response
        )


@pytest.fixture
def webhook_receiver():
    receivers: list[SandboxServer] = []

    def start(status: int = 200) -> tuple[WebhookReceiver, str]:
        receiver = WebhookReceiver(status)
        server = SandboxServer(receiver).start()
        receivers.append(server)
        return receiver, f"{server.url}/api/webhooks/atlas/"

    yield start
    for server in receivers:
        server.stop()


# --- tokens ---------------------------------------------------------------------------------------


def test_token_answer_carries_a_jwt_valid_for_one_hour(atlas_sandbox):
    response = requests.post(
        f"{atlas_sandbox.url}/api/token",
        json={"username": USERNAME, "password": PASSWORD},
        timeout=10,
    )

    payload = response.json()
    assert response.status_code == 200
    assert payload["success"] is True
    assert payload["data"]["expiresIn"] == 3600
    claims = jwt.decode(payload["data"]["token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["iat"] == int(atlas_sandbox.clock.time())


def test_token_works_until_its_hour_is_up_then_401(atlas_sandbox, token):
    atlas_sandbox.clock.advance(3599)
    assert call(atlas_sandbox.url, "/api/Order/GetByIds", [], token).status_code == 200

    atlas_sandbox.clock.advance(1)
    response = call(atlas_sandbox.url, "/api/Order/GetByIds", [], token)

    assert response.status_code == 401
    assert body(response) == {"success": False, "message": "Token expired"}


def test_token_lifetime_is_configurable(make_atlas_sandbox):
    served = make_atlas_sandbox(token_lifetime_seconds=120)
    token = get_token(served.url)
    served.clock.advance(121)

    assert call(served.url, "/api/Order/GetByIds", [], token).status_code == 401


@pytest.mark.parametrize(
    "credentials",
    [
        {"username": USERNAME, "password": "wrong"},
        {"username": "someone-else", "password": PASSWORD},
        {"username": USERNAME, "password": "pässwörd"},  # non-ASCII: a 401, not a crash
    ],
)
def test_bad_credentials_get_401(atlas_sandbox, credentials):
    response = requests.post(f"{atlas_sandbox.url}/api/token", json=credentials, timeout=10)

    assert response.status_code == 401
    assert response.json()["success"] is False


def test_token_request_without_password_is_400(atlas_sandbox):
    response = requests.post(
        f"{atlas_sandbox.url}/api/token", json={"username": USERNAME}, timeout=10
    )

    assert response.status_code == 400


@pytest.mark.parametrize("token_value", [None, "not-a-jwt"])
def test_api_call_without_a_valid_token_is_401(atlas_sandbox, token_value):
    response = call(atlas_sandbox.url, "/api/Counterparty/GetByIds", [], token_value)

    assert response.status_code == 401
    assert body(response)["success"] is False


def test_a_token_from_another_sandbox_is_refused(atlas_sandbox, make_atlas_sandbox):
    other = make_atlas_sandbox()
    foreign = get_token(other.url)

    assert call(atlas_sandbox.url, "/api/Order/GetByIds", [], foreign).status_code == 401


def test_expire_tokens_makes_every_earlier_token_401_and_new_ones_work(atlas_sandbox, token):
    atlas_sandbox.app.expire_tokens()

    assert call(atlas_sandbox.url, "/api/Order/GetByIds", [], token).status_code == 401
    fresh = get_token(atlas_sandbox.url)
    assert call(atlas_sandbox.url, "/api/Order/GetByIds", [], fresh).status_code == 200


# --- rate limit -----------------------------------------------------------------------------------


def test_101st_call_in_a_minute_gets_429_with_retry_after_then_recovers(atlas_sandbox):
    url = atlas_sandbox.url
    with requests.Session() as session:
        token = get_token(url, session)  # the token call counts too: 1
        statuses = [
            call(url, "/api/CustomFields/GetTypes", [], token, session).status_code
            for _ in range(99)
        ]
        assert statuses == [200] * 99

        atlas_sandbox.clock.advance(30)
        limited = call(url, "/api/CustomFields/GetTypes", [], token, session)
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "30"
        assert body(limited)["success"] is False

        atlas_sandbox.clock.advance(30)
        assert call(url, "/api/CustomFields/GetTypes", [], token, session).status_code == 200


def test_rate_limit_can_be_disabled(make_atlas_sandbox):
    served = make_atlas_sandbox(rate_limit_per_minute=None)
    token = get_token(served.url)
    with requests.Session() as session:
        statuses = {
            call(served.url, "/api/CustomFields/GetTypes", [], token, session).status_code
            for _ in range(120)
        }
    assert statuses == {200}


# --- envelope and read patterns ---------------------------------------------------------------


def test_read_all_answers_the_envelope_with_every_record(atlas_sandbox, token):
    response = call(atlas_sandbox.url, "/api/Order/GetByIds", [], token)

    payload = body(response)
    assert response.headers["Content-Type"].startswith("application/json")
    assert payload["success"] is True
    assert payload["recordCount"] == len(atlas_sandbox.app.dataset.orders) == 16
    assert [o["id"] for o in payload["data"]] == sorted(atlas_sandbox.app.dataset.orders)


def test_read_by_ids_returns_those_records_and_skips_unknown_ids(atlas_sandbox, token):
    response = call(atlas_sandbox.url, "/api/Counterparty/GetByIds", [3, 1, 99999], token)

    assert ids(response) == [3, 1]
    assert body(response)["recordCount"] == 2


def test_read_by_single_id(atlas_sandbox, token):
    response = call(atlas_sandbox.url, "/api/Order/GetByIds", 201, token)

    assert ids(response) == [201]


def test_amounts_arrive_as_exact_json_numbers(atlas_sandbox, token):
    expected = atlas_sandbox.app.dataset.orders[201]["totalAmount"]

    response = call(atlas_sandbox.url, "/api/Order/GetByIds", 201, token)

    assert f'"totalAmount": {expected}' in response.text
    assert body(response)["data"][0]["totalAmount"] == expected


def test_items_by_order_ids_returns_only_those_orders_items(atlas_sandbox, token):
    dataset = atlas_sandbox.app.dataset

    response = call(atlas_sandbox.url, "/api/OrderItem/GetByOrderIds", [201, 203], token)

    expected = sorted(i["id"] for i in dataset.order_items.values() if i["orderId"] in (201, 203))
    assert ids(response) == expected
    assert len(expected) == 10


def test_item_shape_is_the_contracts(atlas_sandbox, token):
    response = call(atlas_sandbox.url, "/api/OrderItem/GetByIds", [9001], token)

    assert set(body(response)["data"][0]) == {
        "id",
        "orderId",
        "dealId",
        "description",
        "netAmount",
        "vatAmount",
        "vatRate",
        "volume",
        "volumeUnit",
        "periodFrom",
        "periodTo",
        "cashflow",
        "glAccount",
        "iban",
        "status",
    }


def test_invoice_reads_by_external_id_and_by_order(atlas_sandbox, token):
    invoice = next(iter(atlas_sandbox.app.dataset.invoices.values()))
    url = atlas_sandbox.url

    by_external = call(url, "/api/Invoice/GetByExternalIds", [invoice["externalId"]], token)
    by_order = call(url, "/api/Invoice/GetByOrderId", invoice["orderId"], token)

    assert ids(by_external) == [invoice["id"]]
    assert ids(by_order) == [invoice["id"]]


def test_payment_reads_by_invoice_and_by_order(atlas_sandbox, token):
    dataset = atlas_sandbox.app.dataset
    payment = next(iter(dataset.payments.values()))
    expected = sorted(
        p["id"] for p in dataset.payments.values() if p["invoiceId"] == payment["invoiceId"]
    )

    by_invoice = call(
        atlas_sandbox.url, "/api/Payment/GetByInvoiceIds", [payment["invoiceId"]], token
    )
    by_order = call(atlas_sandbox.url, "/api/Payment/GetByOrderIds", [payment["orderId"]], token)

    assert ids(by_invoice) == expected
    assert ids(by_order) == expected


def test_custom_field_definitions_and_types(atlas_sandbox, token):
    url = atlas_sandbox.url

    definitions = body(
        call(url, "/api/CustomFields/Counterparties/GetByCounterpartyTypeIds", [], token)
    )["data"]
    types = body(call(url, "/api/CustomFields/GetTypes", [], token))["data"]

    by_name = {d["name"]: d for d in definitions}
    assert by_name["ERP Cost Centre"]["type"] == "Text"
    assert by_name["Reporting Segment"]["options"]
    assert any(d["isRequired"] for d in definitions)
    assert {"Text", "Dropdown"} <= {t["name"] for t in types}


def test_read_with_a_malformed_selection_is_400(atlas_sandbox, token):
    response = call(atlas_sandbox.url, "/api/Order/GetByIds", ["two hundred"], token)

    assert response.status_code == 400


def test_unknown_endpoint_is_404_and_get_is_405(atlas_sandbox, token):
    assert call(atlas_sandbox.url, "/api/Deal/GetByIds", [], token).status_code == 404
    response = requests.get(f"{atlas_sandbox.url}/api/Order/GetByIds", timeout=10)
    assert response.status_code == 405


# --- upserts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("id_field", [{"id": 0}, {}])
def test_counterparty_post_without_id_creates(atlas_sandbox, token, id_field):
    dataset = atlas_sandbox.app.dataset
    expected_id = max(dataset.counterparties) + 1

    response = call(
        atlas_sandbox.url,
        "/api/Counterparty/Post",
        [{**id_field, "name": "New Trader", "legalName": "New Trader GmbH"}],
        token,
    )

    saved = body(response)["data"][0]
    assert response.status_code == 200
    assert saved["id"] == expected_id
    assert dataset.counterparties[expected_id]["legalName"] == "New Trader GmbH"
    assert saved["externalId"] is None


def test_counterparty_post_with_existing_id_merges_the_given_fields(atlas_sandbox, token):
    before = dict(atlas_sandbox.app.dataset.counterparties[1])

    response = call(
        atlas_sandbox.url, "/api/Counterparty/Post", [{"id": 1, "externalId": "VENDOR-0001"}], token
    )

    saved = body(response)["data"][0]
    assert saved == {**before, "externalId": "VENDOR-0001"}
    read_back = body(call(atlas_sandbox.url, "/api/Counterparty/GetByIds", 1, token))["data"][0]
    assert read_back["externalId"] == "VENDOR-0001"


def test_post_with_an_unknown_id_is_400_naming_it_and_saves_nothing(atlas_sandbox, token):
    response = call(
        atlas_sandbox.url,
        "/api/Counterparty/Post",
        [{"id": 1, "externalId": "VENDOR-0001"}, {"id": 4242, "externalId": "X"}],
        token,
    )

    assert response.status_code == 400
    assert "4242" in body(response)["message"]
    assert atlas_sandbox.app.dataset.counterparties[1]["externalId"] != "VENDOR-0001"


def test_order_post_writes_the_erp_code_back(atlas_sandbox, token):
    order = atlas_sandbox.app.dataset.orders[201]
    update = {
        "id": 201,
        "erpCode": "ERP-DOC-20260401-0201",
        "registrationDate": order["registrationDate"],
        "dueDate": order["dueDate"],
        "totalAmount": order["totalAmount"],
    }

    response = call(atlas_sandbox.url, "/api/Order/Post", [update], token)

    assert response.status_code == 200
    assert body(response)["data"][0]["erpCode"] == "ERP-DOC-20260401-0201"
    assert atlas_sandbox.app.dataset.orders[201]["erpCode"] == "ERP-DOC-20260401-0201"


@pytest.mark.parametrize("missing", ["registrationDate", "dueDate", "totalAmount"])
def test_order_post_without_a_required_field_is_400_naming_it(atlas_sandbox, token, missing):
    order = atlas_sandbox.app.dataset.orders[201]
    update = {
        "id": 201,
        "erpCode": "ERP-1",
        "registrationDate": order["registrationDate"],
        "dueDate": order["dueDate"],
        "totalAmount": order["totalAmount"],
    }
    del update[missing]

    response = call(atlas_sandbox.url, "/api/Order/Post", [update], token)

    assert response.status_code == 400
    assert missing in body(response)["message"]
    assert atlas_sandbox.app.dataset.orders[201]["erpCode"] is None


def test_invoice_post_creates_linked_to_an_existing_order(atlas_sandbox, token):
    invoice = {
        "id": 0,
        "orderId": 201,
        "externalId": "INV-2026-9001",
        "invoiceNumber": "AR-2026-9001",
        "amount": Decimal("85500.10"),
        "invoiceDate": "2026-04-01T00:00:00",
        "dueDate": "2026-04-15T00:00:00",
        "isPaid": False,
    }

    created = body(call(atlas_sandbox.url, "/api/Invoice/Post", [invoice], token))["data"][0]
    by_order = call(atlas_sandbox.url, "/api/Invoice/GetByOrderId", 201, token)
    by_external = call(atlas_sandbox.url, "/api/Invoice/GetByExternalIds", ["INV-2026-9001"], token)

    assert created["amount"] == Decimal("85500.10")
    assert ids(by_order) == [created["id"]]
    assert ids(by_external) == [created["id"]]


def test_invoice_post_for_an_unknown_order_is_400(atlas_sandbox, token):
    response = call(
        atlas_sandbox.url, "/api/Invoice/Post", [{"orderId": 99999, "amount": 10}], token
    )

    assert response.status_code == 400
    assert "99999" in body(response)["message"]


def test_payment_post_needs_an_existing_invoice_and_inherits_its_order(atlas_sandbox, token):
    invoice = next(iter(atlas_sandbox.app.dataset.invoices.values()))
    url = atlas_sandbox.url

    refused = call(url, "/api/Payment/Post", [{"invoiceId": 77777, "amount": 5}], token)
    created = call(
        url,
        "/api/Payment/Post",
        [{"invoiceId": invoice["id"], "externalId": "PAY-X", "amount": Decimal("12.34")}],
        token,
    )

    assert refused.status_code == 400
    assert "77777" in body(refused)["message"]
    payment = body(created)["data"][0]
    assert payment["orderId"] == invoice["orderId"]
    assert payment["id"] in ids(call(url, "/api/Payment/GetByInvoiceIds", [invoice["id"]], token))


def test_invoice_is_paid_flag_updates_in_place(atlas_sandbox, token):
    invoice = next(iter(atlas_sandbox.app.dataset.invoices.values()))

    call(atlas_sandbox.url, "/api/Invoice/Post", [{"id": invoice["id"], "isPaid": True}], token)

    assert atlas_sandbox.app.dataset.invoices[invoice["id"]]["isPaid"] is True


# --- recorded calls ------------------------------------------------------------------------------


def test_calls_are_recorded_without_password_or_token(atlas_sandbox, token):
    call(atlas_sandbox.url, "/api/Order/GetByIds", [201], token)

    calls = atlas_sandbox.app.calls
    assert [(c.path, c.status, c.had_bearer_token) for c in calls] == [
        ("/api/token", 200, False),
        ("/api/Order/GetByIds", 200, True),
    ]
    assert calls[1].body == {"data": [201]}
    assert PASSWORD not in repr(calls)
    assert token not in repr(calls)
    assert atlas_sandbox.app.calls_to("/api/Order/GetByIds") == [calls[1]]
    atlas_sandbox.app.reset_calls()
    assert atlas_sandbox.app.calls == []


# --- webhooks -------------------------------------------------------------------------------------


def test_status_change_sends_a_webhook_signed_with_the_secret(atlas_sandbox, webhook_receiver):
    receiver, url = webhook_receiver()
    atlas_sandbox.app.webhook_url = url
    secret = atlas_sandbox.app.webhook_secret

    delivery = atlas_sandbox.app.set_order_status(203, "Approved order by ETRM")

    assert delivery is not None and delivery.delivered
    raw, headers = receiver.received[0]
    expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    assert headers["X-Atlas-Signature"] == f"sha256={expected}"
    assert wire.loads(raw) == {
        "event": "order.status_changed",
        "entityType": "Order",
        "entityId": 203,
        "newStatus": "Approved order by ETRM",
        "timestamp": "2026-11-02T09:00:00Z",
    }
    assert atlas_sandbox.app.webhook_deliveries == [delivery]


@pytest.mark.parametrize("receiver_status", [500, None])
def test_a_failing_webhook_receiver_is_recorded_not_raised(
    atlas_sandbox, webhook_receiver, receiver_status
):
    if receiver_status is None:
        # Nothing listens on a port we just let go of.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        url = f"http://127.0.0.1:{port}/hook"
    else:
        _, url = webhook_receiver(receiver_status)
    atlas_sandbox.app.webhook_url = url

    delivery = atlas_sandbox.app.set_order_status(201, "Settled")

    assert delivery is not None and not delivery.delivered
    assert delivery.error
    assert atlas_sandbox.app.dataset.orders[201]["status"] == "Settled"


def test_closing_the_sandbox_drops_its_kept_alive_webhook_connection(make_atlas_sandbox):
    """The receiver's server thread waits on a kept-alive connection, holding what it holds (a
    live test server's database connection: PostgreSQL then cannot drop the test database)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    connection_closed = threading.Event()

    class KeepAliveReceiver(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def finish(self) -> None:
            super().finish()
            connection_closed.set()

        def log_message(self, *args: Any) -> None:
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), KeepAliveReceiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        sandbox = make_atlas_sandbox(
            webhook_url=f"http://127.0.0.1:{receiver.server_port}/api/webhooks/atlas/"
        )
        assert sandbox.app.set_order_status(201, "Settled").delivered
        assert not connection_closed.is_set()  # kept alive for the next delivery

        sandbox.app.close()

        assert connection_closed.wait(timeout=5)
    finally:
        receiver.shutdown()
        receiver.server_close()


def test_control_endpoint_changes_status_and_sends_the_webhook(atlas_sandbox, webhook_receiver):
    receiver, url = webhook_receiver()
    atlas_sandbox.app.webhook_url = url

    response = requests.post(
        f"{atlas_sandbox.url}/_sandbox/orders/204/status",
        json={"status": "Approved order by ETRM"},
        timeout=10,
    )

    assert response.status_code == 200
    assert response.json()["webhook"]["delivered"] is True
    assert atlas_sandbox.app.dataset.orders[204]["status"] == "Approved order by ETRM"
    assert len(receiver.received) == 1
    assert atlas_sandbox.app.calls == []  # controls are not API calls


def test_control_endpoint_changes_an_item_status(atlas_sandbox):
    response = requests.post(
        f"{atlas_sandbox.url}/_sandbox/order-items/9001/status", json={"status": 1}, timeout=10
    )

    assert response.status_code == 200
    assert atlas_sandbox.app.dataset.order_items[9001]["status"] == 1


def test_control_endpoints_refuse_non_loopback_clients(atlas_sandbox):
    client = Client(atlas_sandbox.app)

    response = client.post(
        "/_sandbox/faults", json={"error_rate": 1}, environ_overrides={"REMOTE_ADDR": "10.1.2.3"}
    )

    assert response.status_code == 403
    assert atlas_sandbox.faults.error_rate == 0


# --- faults ------------------------------------------------------------------------------------


def test_error_rate_answers_that_share_with_5xx_error_bodies(make_atlas_sandbox):
    served = make_atlas_sandbox(rate_limit_per_minute=None, faults=FaultConfig(seed=3))
    token = get_token(served.url)
    served.faults.error_rate = 0.25
    with requests.Session() as session:
        responses = [
            call(served.url, "/api/CustomFields/GetTypes", [], token, session) for _ in range(200)
        ]

    failed = [r for r in responses if r.status_code != 200]
    assert 30 <= len(failed) <= 70
    assert {r.status_code for r in failed} <= {500, 502, 503}
    assert all(body(r)["success"] is False and body(r)["message"] for r in failed)


def test_fault_draws_follow_the_seed():
    def draws(seed: int) -> list[Any]:
        faults = FaultConfig(seed=seed, error_rate=0.3, slow_rate=0.2, slow_seconds=1)
        return [faults.next_fault("/api/Order/GetByIds") for _ in range(300)]

    first = draws(11)
    kinds = Counter(f.kind if f else None for f in first)
    assert first == draws(11)
    assert first != draws(12)
    assert 60 <= kinds["error"] <= 120
    assert 30 <= kinds["slow"] <= 90


def test_slow_rate_delays_before_answering(make_atlas_sandbox):
    slept: list[float] = []
    served = make_atlas_sandbox(
        faults=FaultConfig(slow_rate=1.0, slow_seconds=7.5), sleep=slept.append
    )

    response = requests.post(
        f"{served.url}/api/token", json={"username": USERNAME, "password": PASSWORD}, timeout=10
    )

    assert response.status_code == 200
    assert slept == [7.5]


def test_burst_429_answers_the_next_requests_with_retry_after(atlas_sandbox, token):
    atlas_sandbox.faults.burst_429(2, retry_after=61)

    first = call(atlas_sandbox.url, "/api/Order/GetByIds", [], token)
    second = call(atlas_sandbox.url, "/api/Order/GetByIds", [], token)
    third = call(atlas_sandbox.url, "/api/Order/GetByIds", [], token)

    assert [first.status_code, second.status_code, third.status_code] == [429, 429, 200]
    assert first.headers["Retry-After"] == "61"


def test_token_expiry_mid_run(atlas_sandbox, token):
    atlas_sandbox.faults.expire_tokens_at_request(2)

    first = call(atlas_sandbox.url, "/api/Order/GetByIds", [], token)
    second = call(atlas_sandbox.url, "/api/Order/GetByIds", [], token)
    fresh = get_token(atlas_sandbox.url)
    third = call(atlas_sandbox.url, "/api/Order/GetByIds", [], fresh)

    assert [first.status_code, second.status_code, third.status_code] == [200, 401, 200]


def test_faults_set_through_the_control_endpoint(atlas_sandbox, token):
    response = requests.post(
        f"{atlas_sandbox.url}/_sandbox/faults", json={"burst_429": 1}, timeout=10
    )

    assert response.status_code == 200
    assert call(atlas_sandbox.url, "/api/Order/GetByIds", [], token).status_code == 429
    assert requests.get(f"{atlas_sandbox.url}/_sandbox/calls", timeout=10).status_code == 200


# --- seed data ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def book():
    return build_atlas_dataset(seed=2026, orders=240)


def test_same_seed_same_data_and_another_seed_differs():
    first = build_atlas_dataset(seed=5, orders=30)
    again = build_atlas_dataset(seed=5, orders=30)
    other = build_atlas_dataset(seed=6, orders=30)

    assert first == again
    assert first.orders != other.orders


@pytest.mark.parametrize("orders", [6, 16, 240])
def test_every_broken_record_is_present_and_broken_as_named(orders):
    data = build_atlas_dataset(seed=9, orders=orders)
    broken = data.broken

    assert set(broken) == set(BROKEN_KINDS)
    assert all(len(broken[kind]) == 1 for kind in BROKEN_KINDS), broken
    (no_gl_cp,) = broken["counterparty_without_gl_account"]
    (no_gl_item,) = broken["item_without_gl_account"]
    item = data.order_items[no_gl_item]
    assert item["glAccount"] is None
    assert data.counterparties[no_gl_cp]["glAccount"] is None
    assert data.orders[item["orderId"]]["counterpartyId"] == no_gl_cp
    assert broken["order_with_item_without_gl_account"] == [item["orderId"]]
    (mismatch,) = broken["order_total_mismatch"]
    assert data.orders[mismatch]["totalAmount"] != gross_sum(data, mismatch)
    (atlas_only,) = broken["item_atlas_only_gl_account"]
    assert data.order_items[atlas_only]["glAccount"] in chart.ATLAS_ONLY_ACCOUNTS
    (parent,) = broken["item_non_posting_gl_account"]
    assert data.order_items[parent]["glAccount"] in chart.NON_POSTING_ACCOUNTS
    (malformed,) = broken["order_missing_due_date"]
    assert "dueDate" not in data.orders[malformed]
    (missing_cf,) = broken["counterparty_missing_required_custom_field"]
    required = {f["id"] for f in data.counterparty_custom_fields.values() if f["isRequired"]}
    present = {v["customFieldId"] for v in data.counterparties[missing_cf]["customFieldValues"]}
    assert required and not required & present
    # Broken orders are candidates (trigger status, no erpCode, items all in order).
    for kind in BROKEN_KINDS:
        for order_id in broken[kind] if kind.startswith("order") else []:
            order = data.orders[order_id]
            assert order["status"] == "Approved order by ETRM" and order["erpCode"] is None
            assert {i["status"] for i in data.items_of(order_id)} == {2}


def gross_sum(data, order_id: int) -> Decimal:
    return sum((i["netAmount"] + i["vatAmount"] for i in data.items_of(order_id)), Decimal("0.00"))


def test_order_totals_are_the_signed_sums_of_their_items(book):
    mismatched = set(book.broken["order_total_mismatch"])

    for order_id, order in book.orders.items():
        if order_id not in mismatched:
            assert order["totalAmount"] == gross_sum(book, order_id), order_id


def test_items_carry_exact_vat_and_the_contracts_signs(book):
    corrections = set(book.notable["correction_items"])
    rates = set()

    for item in book.order_items.values():
        net, vat, rate = item["netAmount"], item["vatAmount"], item["vatRate"]
        rates.add(rate)
        assert net == net.quantize(Decimal("0.01")) and vat == vat.quantize(Decimal("0.01"))
        assert abs(vat) == (abs(net) * rate / 100).quantize(Decimal("0.01"), ROUND_HALF_UP)
        positive = net > 0
        expected_positive = item["cashflow"] == 0
        if item["id"] in corrections:
            expected_positive = not expected_positive
        assert positive == expected_positive, item
    assert corrections
    assert {Decimal("19.0"), Decimal("20.0"), Decimal("21.0"), Decimal("0.0")} <= rates


def test_gl_accounts_come_from_the_chart(book):
    odd = set(chart.ATLAS_ONLY_ACCOUNTS) | set(chart.NON_POSTING_ACCOUNTS)
    for item in book.order_items.values():
        account = item["glAccount"]
        if account is None or account in odd:
            continue
        allowed = chart.REVENUE_ACCOUNTS if item["cashflow"] == 0 else chart.EXPENSE_ACCOUNTS
        assert account in allowed, item
    for cp in book.counterparties.values():
        assert cp["glAccount"] is None or cp["glAccount"] in (
            chart.REVENUE_ACCOUNTS + chart.EXPENSE_ACCOUNTS
        )
    with_own = sum(1 for i in book.order_items.values() if i["glAccount"])
    assert 0 < with_own < len(book.order_items)


def test_counterparties_have_valid_vat_iban_and_bic(book):
    countries = set()
    for cp in book.counterparties.values():
        assert vat_check.is_valid(cp["vat"]), cp["vat"]
        assert iban_check.is_valid(cp["iban"]), cp["iban"]
        assert bic_check.is_valid(cp["swiftBic"]), cp["swiftBic"]
        assert cp["iban"][:2] == cp["vat"][:2] == cp["swiftBic"][4:6]
        countries.add(cp["vat"][:2])
    for item in book.order_items.values():
        assert item["iban"] is None or iban_check.is_valid(item["iban"])
    assert {"DE", "FR", "NL", "IT", "ES", "AT", "BE", "PL"} <= countries
    assert any(cp["externalId"] for cp in book.counterparties.values())
    assert any(cp["externalId"] is None for cp in book.counterparties.values())
    assert any(cp["selfBilling"] for cp in book.counterparties.values())


def test_orders_cover_every_status_and_items_every_item_status(book):
    statuses = Counter(o["status"] for o in book.orders.values())

    assert set(statuses) == set(ORDER_STATUSES)
    assert statuses.most_common(1)[0][0] == "Approved order by ETRM"
    assert {i["status"] for i in book.order_items.values()} == {0, 1, 2}
    assert book.notable["orders_held_by_unapproved_item"]
    for order in book.orders.values():
        if order["status"] in STATUSES_WITH_ERP_CODE:
            assert order["erpCode"]


def test_invoices_and_payments_exist_for_invoiced_orders(book):
    invoiced = {inv["orderId"]: inv for inv in book.invoices.values()}

    for order_id, order in book.orders.items():
        assert (order_id in invoiced) == (order["status"] in STATUSES_WITH_INVOICE)
    for invoice in book.invoices.values():
        paid = sum(
            (p["amount"] for p in book.payments.values() if p["invoiceId"] == invoice["id"]),
            Decimal("0.00"),
        )
        status = book.orders[invoice["orderId"]]["status"]
        assert invoice["amount"] > 0
        if status == "Settled":
            assert paid == invoice["amount"] and invoice["isPaid"]
        elif status == "Partially Settled":
            assert 0 < paid < invoice["amount"] and not invoice["isPaid"]
    assert all(p["amount"] > 0 for p in book.payments.values())
    assert all(inv["externalId"].startswith("INV-2026-") for inv in book.invoices.values())


def test_ten_thousand_orders_build_quickly_and_read_in_one_response(make_atlas_sandbox):
    import time

    started = time.perf_counter()
    served = make_atlas_sandbox(seed=2026, orders=10_000)
    built = time.perf_counter() - started
    token = get_token(served.url)

    response = call(served.url, "/api/OrderItem/GetByIds", [], token)

    assert built < 10
    assert body(response)["recordCount"] == 50_000


def test_every_seeded_record_parses_except_the_deliberately_malformed_order(book):
    from integration.atlas import records

    kinds = [
        (records.CustomFieldType, book.custom_field_types),
        (records.CustomFieldDefinition, book.counterparty_custom_fields),
        (records.Counterparty, book.counterparties),
        (records.Order, book.orders),
        (records.OrderItem, book.order_items),
        (records.Invoice, book.invoices),
        (records.Payment, book.payments),
    ]
    failures = []
    for record_type, raw_records in kinds:
        for raw in raw_records.values():
            try:
                record_type.from_json(wire.loads(wire.dumps(raw)))
            except records.RecordError as error:
                failures.append((error.entity, error.record_id, error.field))

    assert failures == [("Order", book.broken["order_missing_due_date"][0], "dueDate")]


# --- concurrency, clock and fault configuration ------------------------------------------


def test_concurrent_creates_get_distinct_ids(make_atlas_sandbox):
    served = make_atlas_sandbox(rate_limit_per_minute=None)
    token = get_token(served.url)
    created: list[int] = []
    lock = threading.Lock()

    def create(n: int) -> None:
        response = call(served.url, "/api/Counterparty/Post", [{"name": f"Parallel {n}"}], token)
        with lock:
            created.extend(ids(response))

    threads = [threading.Thread(target=create, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(created) == len(set(created)) == 20


def test_clock_frozen_moves_only_when_advanced():
    from datetime import UTC, datetime, timedelta

    from integration.sandbox.clock import SandboxClock

    start = datetime(2026, 4, 1, 8, 30, tzinfo=UTC)
    clock = SandboxClock(start, frozen=True)

    assert clock.now() == start
    clock.advance(90)
    clock.advance(timedelta(minutes=1))
    assert clock.now() == start + timedelta(seconds=150)
    assert clock.time() == start.timestamp() + 150


def test_clock_running_follows_real_time_from_its_start():
    from datetime import UTC, datetime

    from integration.sandbox.clock import SandboxClock

    start = datetime(2030, 1, 1, tzinfo=UTC)
    clock = SandboxClock(start)
    clock.advance(3600)

    assert 3600 <= clock.time() - start.timestamp() < 3660
    assert clock.now().tzinfo is UTC


def test_fault_config_exempts_control_paths_and_clears():
    faults = FaultConfig(error_rate=1.0)

    assert faults.next_fault("/_sandbox/faults") is None
    assert faults.next_fault("/api/Order/GetByIds").status in (500, 502, 503)
    faults.clear()
    assert faults.next_fault("/api/Order/GetByIds") is None


def test_fault_config_refuses_impossible_settings():
    faults = FaultConfig()

    with pytest.raises(ValueError, match="error_rate"):
        faults.error_rate = 1.5
    with pytest.raises(ValueError, match="unknown fault settings: typo"):
        faults.update(typo=1)
