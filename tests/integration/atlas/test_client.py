"""AtlasClient against the ATLAS sandbox over real HTTP on loopback.

The client's sleep is a recorder (nothing really sleeps) and its clock a fake that the tests move
together with the sandbox's frozen SandboxClock.
"""

from __future__ import annotations

import logging
import pickle
import socket
import threading
from collections.abc import Callable
from decimal import Decimal

import pytest
from werkzeug.wrappers import Request, Response

from integration.atlas.client import AtlasClient
from integration.atlas.errors import (
    AtlasAuthenticationError,
    AtlasBadRequestError,
    AtlasConnectionError,
    AtlasError,
    AtlasPacingError,
    AtlasProtocolError,
    AtlasRateLimitError,
    AtlasServerError,
    AtlasTimeoutError,
)
from integration.atlas.ratelimit import memory_pacer
from integration.atlas.records import (
    Counterparty,
    CustomFieldDefinition,
    CustomFieldType,
    Invoice,
    Order,
    OrderItem,
    Payment,
)
from integration.sandbox.server import SandboxServer
from tests.fixtures.atlas_sandbox import SANDBOX_PASSWORD, SANDBOX_START, SANDBOX_USERNAME

TOKEN = "/api/token"


class FakeClock:
    """The client's clock: seconds since the epoch, moved only by the test."""

    def __init__(self, start: float):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingSleep:
    """Records every requested sleep; `then` runs a step (e.g. clearing faults) after the n-th."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.then: dict[int, Callable[[], None]] = {}

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        step = self.then.get(len(self.calls))
        if step is not None:
            step()


class CountingPacer:
    def __init__(self) -> None:
        self.acquired = 0

    def acquire(self) -> None:
        self.acquired += 1


@pytest.fixture
def sandbox(make_atlas_sandbox):
    return make_atlas_sandbox()


@pytest.fixture
def clock():
    return FakeClock(SANDBOX_START.timestamp())


@pytest.fixture
def sleep():
    return RecordingSleep()


@pytest.fixture
def make_client(sandbox, clock, sleep):
    def make(**options) -> AtlasClient:
        options.setdefault("base_url", sandbox.url)
        options.setdefault("username", SANDBOX_USERNAME)
        options.setdefault("password", SANDBOX_PASSWORD)
        options.setdefault("sleep", sleep)
        options.setdefault("clock", clock)
        return AtlasClient(**options)

    return make


@pytest.fixture
def client(make_client):
    return make_client()


def api_calls(sandbox, start: int = 0) -> list[tuple[str, object]]:
    """(path, body) of every non-token call answered since `start`."""
    return [(c.path, c.body) for c in sandbox.app.calls[start:] if c.path != TOKEN]


def paths_and_statuses(sandbox, start: int = 0) -> list[tuple[str, int]]:
    return [(c.path, c.status) for c in sandbox.app.calls[start:]]


# --- every method: request path, exact body, typed records ---------------------------------------


def test_reads_of_everything_send_an_empty_data_array(sandbox, client):
    dataset = sandbox.app.dataset

    types = client.get_custom_field_types()
    fields = client.get_counterparty_custom_fields()
    counterparties = client.get_counterparties()
    orders = client.get_orders()
    items = client.get_order_items()
    invoices = client.get_invoices()

    assert api_calls(sandbox) == [
        ("/api/CustomFields/GetTypes", {"data": []}),
        ("/api/CustomFields/Counterparties/GetByCounterpartyTypeIds", {"data": []}),
        ("/api/Counterparty/GetByIds", {"data": []}),
        ("/api/Order/GetByIds", {"data": []}),
        ("/api/OrderItem/GetByIds", {"data": []}),
        ("/api/Invoice/GetByIds", {"data": []}),
    ]
    assert all(isinstance(r, CustomFieldType) for r in types.records)
    assert all(isinstance(r, CustomFieldDefinition) for r in fields.records)
    assert len(types.records) == len(dataset.custom_field_types)
    assert len(fields.records) == len(dataset.counterparty_custom_fields)
    for result, record_type, entity in [
        (counterparties, Counterparty, dataset.counterparties),
        (orders, Order, dataset.orders),
        (items, OrderItem, dataset.order_items),
        (invoices, Invoice, dataset.invoices),
    ]:
        assert all(isinstance(r, record_type) for r in result.records)
        # Deliberately broken seed records land in .errors, never lost and never a crash.
        assert len(result.records) + len(result.errors) == len(entity)


def test_none_and_empty_ids_both_mean_all(sandbox, client):
    client.get_orders(None)
    client.get_orders([])
    client.get_counterparties(())

    assert api_calls(sandbox) == [
        ("/api/Order/GetByIds", {"data": []}),
        ("/api/Order/GetByIds", {"data": []}),
        ("/api/Counterparty/GetByIds", {"data": []}),
    ]


def test_reads_by_ids_send_the_ids(sandbox, client):
    dataset = sandbox.app.dataset
    order_ids = sorted(dataset.orders)[:3]
    counterparty_ids = sorted(dataset.counterparties)[:2]
    item_ids = sorted(dataset.order_items)[:4]
    invoice = next(iter(dataset.invoices.values()))
    external_ids = [invoice["externalId"], "INV-NOT-THERE"]

    counterparties = client.get_counterparties(counterparty_ids)
    orders = client.get_orders(order_ids)
    items = client.get_order_items(item_ids)
    items_of_orders = client.get_order_items_by_order_ids(order_ids)
    invoices = client.get_invoices([invoice["id"]])
    by_external = client.get_invoices_by_external_ids(external_ids)
    by_order = client.get_invoices_by_order_id(invoice["orderId"])
    payments_by_invoice = client.get_payments_by_invoice_ids([invoice["id"]])
    payments_by_order = client.get_payments_by_order_ids([invoice["orderId"]])
    fields = client.get_counterparty_custom_fields([1, 2])

    assert api_calls(sandbox) == [
        ("/api/Counterparty/GetByIds", {"data": counterparty_ids}),
        ("/api/Order/GetByIds", {"data": order_ids}),
        ("/api/OrderItem/GetByIds", {"data": item_ids}),
        ("/api/OrderItem/GetByOrderIds", {"data": order_ids}),
        ("/api/Invoice/GetByIds", {"data": [invoice["id"]]}),
        ("/api/Invoice/GetByExternalIds", {"data": external_ids}),
        ("/api/Invoice/GetByOrderId", {"data": invoice["orderId"]}),
        ("/api/Payment/GetByInvoiceIds", {"data": [invoice["id"]]}),
        ("/api/Payment/GetByOrderIds", {"data": [invoice["orderId"]]}),
        ("/api/CustomFields/Counterparties/GetByCounterpartyTypeIds", {"data": [1, 2]}),
    ]
    assert sorted(counterparties.by_id) == counterparty_ids
    assert sorted(orders.by_id) == order_ids
    assert sorted(items.by_id) == item_ids
    assert {i.order_id for i in items_of_orders.records} == set(order_ids)
    assert [i.id for i in invoices.records] == [invoice["id"]]
    assert [i.external_id for i in by_external.records] == [invoice["externalId"]]
    assert invoice["id"] in by_order.by_id
    assert all(isinstance(p, Payment) for p in payments_by_invoice.records)
    assert {p.order_id for p in payments_by_order.records} <= {invoice["orderId"]}
    assert all(set(f.counterparty_type_ids) & {1, 2} for f in fields.records)


def test_reads_by_parent_ids_with_no_ids_send_nothing(sandbox, client):
    results = [
        client.get_order_items_by_order_ids([]),
        client.get_invoices_by_external_ids([]),
        client.get_payments_by_invoice_ids([]),
        client.get_payments_by_order_ids([]),
    ]

    assert sandbox.app.calls == []
    assert all(r.records == [] and r.errors == [] for r in results)


def test_order_write_back_sends_the_records_and_returns_the_saved_order(sandbox, client):
    order = next(o for o in sandbox.app.dataset.orders.values() if o["erpCode"] is None)
    record = {
        "id": order["id"],
        "erpCode": "ERP-DOC-20260401-0042",
        "registrationDate": order["registrationDate"],
        "dueDate": order["dueDate"],
        "totalAmount": order["totalAmount"],
    }

    result = client.post_orders([record])

    assert api_calls(sandbox) == [("/api/Order/Post", {"data": [record]})]
    assert [o.erp_code for o in result.records] == ["ERP-DOC-20260401-0042"]
    assert result.records[0].total_amount == order["totalAmount"]
    assert sandbox.app.dataset.orders[order["id"]]["erpCode"] == "ERP-DOC-20260401-0042"


def test_counterparty_invoice_and_payment_writes_send_exact_bodies(sandbox, client):
    dataset = sandbox.app.dataset
    counterparty_id = min(dataset.counterparties)
    order = next(iter(dataset.orders.values()))
    counterparty = {"id": counterparty_id, "externalId": "VENDOR-0042"}
    invoice = {
        "orderId": order["id"],
        "externalId": "INV-2026-9999",
        "invoiceNumber": "SB-2026-999",
        "amount": Decimal("85500.00"),
        "invoiceDate": "2026-04-01T00:00:00",
        "dueDate": "2026-04-15T00:00:00",
        "isPaid": False,
    }

    saved_counterparty = client.post_counterparties([counterparty])
    saved_invoice = client.post_invoices([invoice])
    invoice_id = saved_invoice.records[0].id
    payment = {
        "invoiceId": invoice_id,
        "orderId": order["id"],
        "externalId": "PAY-2026-9999",
        "amount": Decimal("42750.00"),
        "paymentDate": "2026-04-14T00:00:00",
    }
    saved_payment = client.post_payments([payment])

    assert api_calls(sandbox) == [
        ("/api/Counterparty/Post", {"data": [counterparty]}),
        ("/api/Invoice/Post", {"data": [invoice]}),
        ("/api/Payment/Post", {"data": [payment]}),
    ]
    assert saved_counterparty.records[0].external_id == "VENDOR-0042"
    assert saved_invoice.records[0].external_id == "INV-2026-9999"
    assert saved_payment.records[0].amount == Decimal("42750.00")
    assert saved_payment.records[0].invoice_id == invoice_id


def test_writes_go_in_arrays_of_at_most_batch_size(sandbox, make_client):
    client = make_client(batch_size=2)
    ids = sorted(sandbox.app.dataset.counterparties)[:5]
    records = [{"id": cid, "externalId": f"VENDOR-{cid}"} for cid in ids]

    result = client.post_counterparties(records)

    assert api_calls(sandbox) == [
        ("/api/Counterparty/Post", {"data": records[0:2]}),
        ("/api/Counterparty/Post", {"data": records[2:4]}),
        ("/api/Counterparty/Post", {"data": records[4:5]}),
    ]
    assert [c.external_id for c in result.records] == [f"VENDOR-{cid}" for cid in ids]


def test_writing_nothing_sends_nothing(sandbox, client):
    assert client.post_orders([]).records == []
    assert sandbox.app.calls == []


# --- chunking ------------------------------------------------------------------------------------


def test_1201_ids_go_in_three_calls_of_at_most_500(sandbox, make_client):
    client = make_client(batch_size=500)
    real = sorted(sandbox.app.dataset.orders)
    ids = list(range(100_000, 101_201))
    # Real orders in the first and the last chunk: results of every chunk are merged.
    ids[10], ids[1_150] = real[0], real[1]

    result = client.get_orders(ids)

    assert api_calls(sandbox) == [
        ("/api/Order/GetByIds", {"data": ids[0:500]}),
        ("/api/Order/GetByIds", {"data": ids[500:1000]}),
        ("/api/Order/GetByIds", {"data": ids[1000:1201]}),
    ]
    assert sorted(result.by_id) == [real[0], real[1]]


def test_repeated_ids_are_asked_for_once(sandbox, client):
    order_id = min(sandbox.app.dataset.orders)

    client.get_orders([order_id, order_id, order_id])

    assert api_calls(sandbox) == [("/api/Order/GetByIds", {"data": [order_id]})]


# --- money --------------------------------------------------------------------------------------


def test_amounts_stay_exact_end_to_end(sandbox, client):
    dataset = sandbox.app.dataset
    order_id, big_order_id = sorted(dataset.orders)[:2]
    dataset.orders[order_id]["totalAmount"] = Decimal("71848.74")
    dataset.orders[big_order_id]["totalAmount"] = Decimal("12345678901234567.89")
    item_id = min(dataset.order_items)
    dataset.order_items[item_id]["netAmount"] = Decimal("0.10")
    dataset.order_items[item_id]["vatAmount"] = Decimal("0.20")

    orders = client.get_orders([order_id, big_order_id]).by_id
    item = client.get_order_items([item_id]).records[0]
    saved = client.post_invoices(
        [{"orderId": order_id, "externalId": "INV-EXACT", "amount": Decimal("71848.74")}]
    )

    assert orders[order_id].total_amount == Decimal("71848.74")
    assert orders[big_order_id].total_amount == Decimal("12345678901234567.89")
    assert item.gross_amount == Decimal("0.30")  # 0.1 + 0.2 in float would not be
    sent = sandbox.app.calls_to("/api/Invoice/Post")[0].body["data"][0]["amount"]
    assert sent == Decimal("71848.74") and isinstance(sent, Decimal)
    assert saved.records[0].amount == Decimal("71848.74")


# --- bad records --------------------------------------------------------------------------------


def test_a_bad_record_is_reported_while_the_rest_parse(sandbox, client):
    orders = sandbox.app.dataset.orders
    bad_id = sorted(orders)[3]
    del orders[bad_id]["totalAmount"]
    healthy = client.get_orders(sorted(orders)[:3])

    result = client.get_orders(sorted(orders)[:6])

    assert len(healthy.errors) == 0
    assert bad_id not in result.by_id
    assert len(result.records) == 5
    errors = [(e.entity, e.record_id, e.field) for e in result.errors]
    assert errors == [("Order", bad_id, "totalAmount")]


# --- token ----------------------------------------------------------------------------------------


def test_token_is_fetched_once_and_reused(sandbox, client):
    client.get_orders()
    client.get_counterparties()
    client.get_invoices()

    calls = sandbox.app.calls
    assert [c.path for c in calls].count(TOKEN) == 1
    assert calls[0].path == TOKEN
    assert calls[0].body == {"username": SANDBOX_USERNAME, "password": "[redacted]"}
    assert all(c.had_bearer_token for c in calls[1:])
    assert all(c.status == 200 for c in calls)
    assert (client.stats.token_renewals, client.stats.requests) == (1, 4)


def test_token_is_renewed_before_it_expires(sandbox, client, clock):
    client.get_orders()
    # 55 minutes on: inside the 5-minute renewal margin of a 60-minute token.
    clock.advance(3_300)
    sandbox.clock.advance(3_300)

    client.get_orders()

    assert paths_and_statuses(sandbox) == [
        (TOKEN, 200),
        ("/api/Order/GetByIds", 200),
        (TOKEN, 200),
        ("/api/Order/GetByIds", 200),
    ]
    assert client.stats.token_renewals == 2


def test_token_is_kept_while_outside_the_renewal_margin(sandbox, client, clock):
    client.get_orders()
    clock.advance(3_299)
    sandbox.clock.advance(3_299)

    client.get_orders()

    assert [c.path for c in sandbox.app.calls].count(TOKEN) == 1


def test_a_401_mid_run_renews_the_token_once_and_retries(sandbox, client, sleep):
    client.get_orders()
    sandbox.app.expire_tokens()
    start = len(sandbox.app.calls)

    result = client.get_counterparties()

    assert paths_and_statuses(sandbox, start) == [
        ("/api/Counterparty/GetByIds", 401),
        (TOKEN, 200),
        ("/api/Counterparty/GetByIds", 200),
    ]
    assert result.records
    assert client.stats.token_renewals == 2
    assert sleep.calls == []


def test_a_second_401_after_renewal_raises_authentication_error(sandbox, client, sleep):
    client.get_orders()
    sandbox.app.expire_tokens()
    # Request 1: the old token (401); 2: a new token; 3: meets another expiry (401).
    sandbox.faults.expire_tokens_at_request(3)
    start = len(sandbox.app.calls)

    with pytest.raises(AtlasAuthenticationError) as caught:
        client.get_orders()

    assert paths_and_statuses(sandbox, start) == [
        ("/api/Order/GetByIds", 401),
        (TOKEN, 200),
        ("/api/Order/GetByIds", 401),
    ]
    assert caught.value.endpoint == "/api/Order/GetByIds"
    assert caught.value.status == 401
    assert caught.value.retryable is False
    assert sleep.calls == []


def test_wrong_credentials_raise_authentication_error_without_the_password(
    sandbox, make_client, sleep
):
    client = make_client(password="not-the-password-123")

    with pytest.raises(AtlasAuthenticationError) as caught:
        client.get_orders()

    assert caught.value.endpoint == TOKEN
    assert caught.value.status == 401
    assert "Invalid username or password" in str(caught.value)
    assert "not-the-password-123" not in str(caught.value)
    assert "not-the-password-123" not in repr(caught.value)
    assert "not-the-password-123" not in repr(client)
    assert paths_and_statuses(sandbox) == [(TOKEN, 401)]
    assert sleep.calls == []


# --- rate limit -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after", "expected_wait"),
    [(None, 60.0), (5, 60.0), (90, 90.0)],
)
def test_a_429_burst_waits_the_longer_of_60s_and_retry_after(
    sandbox, client, sleep, retry_after, expected_wait
):
    client.get_orders()
    sandbox.faults.burst_429(2, retry_after=retry_after)
    start = len(sandbox.app.calls)

    result = client.get_orders()

    assert paths_and_statuses(sandbox, start) == [
        ("/api/Order/GetByIds", 429),
        ("/api/Order/GetByIds", 429),
        ("/api/Order/GetByIds", 200),
    ]
    assert sleep.calls == [expected_wait, expected_wait]
    assert result.records
    assert (client.stats.rate_limited, client.stats.retries) == (2, 2)


def test_429_beyond_the_retries_raises_rate_limit_error(sandbox, make_client, sleep):
    client = make_client(max_retries=2)
    client.get_orders()
    sandbox.faults.burst_429(5, retry_after=120)

    with pytest.raises(AtlasRateLimitError) as caught:
        client.get_orders()

    assert sleep.calls == [120.0, 120.0]
    assert caught.value.status == 429
    assert caught.value.retry_after_seconds == 120
    assert caught.value.endpoint == "/api/Order/GetByIds"
    assert client.stats.rate_limited == 3


# --- 5xx, timeouts, connections, 4xx -----------------------------------------------------------


def test_5xx_is_retried_with_capped_jittered_backoff_then_succeeds(sandbox, client, sleep):
    client.get_orders()
    sandbox.faults.update(error_rate=1.0, error_statuses=[503])
    sleep.then[2] = sandbox.faults.clear
    start = len(sandbox.app.calls)

    result = client.get_orders()

    assert paths_and_statuses(sandbox, start) == [
        ("/api/Order/GetByIds", 503),
        ("/api/Order/GetByIds", 503),
        ("/api/Order/GetByIds", 200),
    ]
    assert result.records
    first, second = sleep.calls
    assert 1.0 <= first <= 2.0
    assert 2.0 <= second <= 3.0
    assert client.stats.retries == 2


def test_backoff_is_capped(sandbox, make_client, sleep):
    client = make_client(max_retries=8)
    client.get_orders()
    sandbox.faults.update(error_rate=1.0, error_statuses=[500])

    with pytest.raises(AtlasServerError):
        client.get_orders()

    assert len(sleep.calls) == 8
    assert max(sleep.calls) <= 30.0
    assert sleep.calls[-1] == 30.0


def test_5xx_beyond_max_retries_raises_server_error_with_endpoint_status_message(
    sandbox, make_client, sleep
):
    client = make_client(max_retries=2)
    client.get_orders()
    sandbox.faults.update(error_rate=1.0, error_statuses=[503])
    start = len(sandbox.app.calls)

    with pytest.raises(AtlasServerError) as caught:
        client.get_orders()

    error = caught.value
    assert (error.endpoint, error.status) == ("/api/Order/GetByIds", 503)
    assert error.message == "Service temporarily unavailable (injected 503)"
    assert error.retryable is True
    assert str(error) == (
        "ATLAS /api/Order/GetByIds failed (HTTP 503): "
        "Service temporarily unavailable (injected 503)"
    )
    assert len(sandbox.app.calls[start:]) == 3
    assert len(sleep.calls) == 2


def test_a_timeout_is_retried(sandbox, make_client, sleep):
    client = make_client(timeout=0.05)
    client.get_orders()
    sandbox.faults.update(slow_rate=1.0, slow_seconds=0.3)
    sleep.then[1] = sandbox.faults.clear

    result = client.get_orders()

    assert result.records
    assert len(sleep.calls) == 1
    assert client.stats.retries == 1


def test_timeouts_beyond_max_retries_raise_timeout_error(sandbox, make_client, sleep):
    client = make_client(timeout=0.05, max_retries=1)
    client.get_orders()
    sandbox.faults.update(slow_rate=1.0, slow_seconds=0.3)

    with pytest.raises(AtlasTimeoutError) as caught:
        client.get_orders()

    assert caught.value.endpoint == "/api/Order/GetByIds"
    assert caught.value.status is None
    assert len(sleep.calls) == 1


def test_a_400_is_not_retried_and_carries_atlas_message(sandbox, client, sleep):
    order = next(iter(sandbox.app.dataset.orders.values()))

    with pytest.raises(AtlasBadRequestError) as caught:
        client.post_orders([{"id": order["id"], "erpCode": "ERP-1"}])

    assert caught.value.status == 400
    assert caught.value.message == f"Order {order['id']}: 'registrationDate' is required"
    assert caught.value.retryable is False
    assert len(sandbox.app.calls_to("/api/Order/Post")) == 1
    assert sleep.calls == []


def test_a_404_is_a_bad_request_and_not_retried(make_client, sandbox, sleep):
    client = make_client(base_url=sandbox.url + "/v0")

    with pytest.raises(AtlasBadRequestError) as caught:
        client.get_orders()

    assert caught.value.status == 404
    assert sleep.calls == []


# --- pacing ---------------------------------------------------------------------------------------


def test_every_request_is_paced_token_and_retries_included(sandbox, make_client):
    pacer = CountingPacer()
    client = make_client(limiter=pacer)
    client.get_orders()
    sandbox.faults.burst_429(1)
    sandbox.app.expire_tokens()

    client.get_orders()

    # token, orders | orders 429, orders 401, token, orders
    assert client.stats.requests == len(sandbox.app.calls) == 6
    assert pacer.acquired == 6


def test_a_full_window_stops_the_client_before_it_sends(sandbox, make_client, sleep):
    pacer = memory_pacer(requests_per_minute=2, max_wait_seconds=0, sleep=sleep)
    client = make_client(limiter=pacer)
    client.get_orders()  # token + orders: the window is full

    with pytest.raises(AtlasPacingError) as caught:
        client.get_orders()

    assert len(sandbox.app.calls) == 2
    assert caught.value.status is None
    assert caught.value.retry_after_seconds > 0
    assert sleep.calls == []
    pacer.close()


# --- secrets --------------------------------------------------------------------------------------


def test_no_password_or_token_reaches_logs_or_errors(sandbox, make_client, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client(max_retries=1)
    tokens: list[str] = []
    errors: list[AtlasError] = []

    client.get_orders()
    tokens.append(client._token)
    sandbox.app.expire_tokens()
    sandbox.faults.burst_429(1)
    client.get_orders()
    tokens.append(client._token)
    sandbox.app.expire_tokens()
    sandbox.faults.expire_tokens_at_request(3)
    with pytest.raises(AtlasAuthenticationError) as auth_error:
        client.get_orders()
    errors.append(auth_error.value)
    tokens.append(client._token)
    sandbox.faults.update(error_rate=1.0)
    with pytest.raises(AtlasServerError) as server_error:
        client.get_orders()
    errors.append(server_error.value)

    assert caplog.records, "the client logs what it does"
    secrets = [SANDBOX_PASSWORD, *tokens]
    assert len(set(tokens)) == 3
    logged = caplog.text + " ".join(str(vars(record)) for record in caplog.records)
    for secret in secrets:
        assert secret not in logged
        for error in errors:
            assert secret not in str(error)
            assert secret not in repr(error)
            assert secret not in str(error.__cause__ or "")


# --- errors ---------------------------------------------------------------------------------------


def test_errors_survive_pickling_for_the_task_queue():
    error = AtlasRateLimitError(
        "slow down", endpoint="/api/Order/GetByIds", status=429, retry_after_seconds=90
    )

    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes, just made

    assert type(copy) is AtlasRateLimitError
    assert (copy.endpoint, copy.status, copy.message, copy.retry_after_seconds) == (
        "/api/Order/GetByIds",
        429,
        "slow down",
        90,
    )
    assert str(copy) == str(error)


# --- answers that are not ATLAS's envelope, and no answer at all ------------------------------


def _serve(status: str, body: bytes, content_type: str = "application/json"):
    """A one-route WSGI app: the token works, every other path answers `status` + `body`."""

    def app(environ, start_response):
        if environ["PATH_INFO"] == TOKEN:
            start_response("200 OK", [("Content-Type", "application/json")])
            return [b'{"success": true, "data": {"token": "t0k3n-abc", "expiresIn": 3600}}']
        start_response(status, [("Content-Type", content_type)])
        return [body]

    return SandboxServer(app).start()


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        ("200 OK", b"<html>maintenance</html>", "answer is not JSON"),
        ("200 OK", b'{"data": []}', "answer is not the ATLAS envelope"),
        ("200 OK", b'{"success": false, "message": "Order module locked"}', "Order module locked"),
        ("200 OK", b'{"success": true, "data": "nope"}', "'data' must be a list"),
    ],
)
def test_an_answer_that_is_not_the_envelope_is_a_protocol_error(
    make_client, sleep, status, body, expected
):
    server = _serve(status, body)
    try:
        client = make_client(base_url=server.url)

        with pytest.raises(AtlasProtocolError) as caught:
            client.get_orders()
    finally:
        server.stop()

    assert expected in str(caught.value)
    assert caught.value.endpoint == "/api/Order/GetByIds"
    assert sleep.calls == []


def test_a_non_json_5xx_quotes_the_start_of_the_body(make_client):
    server = _serve("502 Bad Gateway", b"<html>bad gateway</html>", "text/html")
    try:
        client = make_client(base_url=server.url, max_retries=0)

        with pytest.raises(AtlasServerError) as caught:
            client.get_orders()
    finally:
        server.stop()

    assert caught.value.status == 502
    assert caught.value.message == "<html>bad gateway</html>"


def test_a_refused_connection_is_retried_then_raises_connection_error(make_client, sleep):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    client = make_client(base_url=f"http://127.0.0.1:{closed_port}", max_retries=2)

    with pytest.raises(AtlasConnectionError) as caught:
        client.get_orders()

    assert caught.value.endpoint == TOKEN
    assert caught.value.status is None
    assert caught.value.retryable is True
    assert len(sleep.calls) == 2
    assert client.stats.requests == 3


# --- options --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"max_retries": -1}, "max_retries"),
        ({"timeout": 0}, "timeout"),
        ({"token_renew_margin_seconds": -1}, "token_renew_margin_seconds"),
        ({"rate_limit_wait_seconds": -5}, "rate_limit_wait_seconds"),
        ({"base_url": "ftp://atlas.example.com"}, "base_url"),
        ({"base_url": "https://svc:pw@atlas.example.com"}, "credentials"),
        ({"password": ""}, "username and password"),
        ({"limiter": object()}, "acquire"),
    ],
)
def test_invalid_options_are_refused(options, message):
    settings = {
        "base_url": "https://atlas.example.com",
        "username": "svc",
        "password": "pw",
        **options,
    }

    with pytest.raises(ValueError, match=message):
        AtlasClient(**settings)


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        AtlasClient("https://atlas.example.com", "svc", "pw")  # type: ignore[misc]


def test_ids_must_be_integers(client, sandbox):
    with pytest.raises(TypeError, match="integers"):
        client.get_orders(["210"])
    with pytest.raises(TypeError, match="list of ids"):
        client.get_invoices_by_external_ids("INV-1")

    assert sandbox.app.calls == []


# --- review: creates are never resent blindly, no redirect, no float, no full IBAN ----------


def _new_invoice(sandbox, external_id: str) -> dict:
    order = next(iter(sandbox.app.dataset.orders.values()))
    return {
        "orderId": order["id"],
        "externalId": external_id,
        "invoiceNumber": "SB-2026-777",
        "amount": Decimal("85500.00"),
        "invoiceDate": "2026-04-01T00:00:00",
        "dueDate": "2026-04-15T00:00:00",
        "isPaid": False,
    }


def test_a_create_is_not_resent_after_a_timeout(sandbox, make_client, sleep):
    client = make_client(timeout=0.05)
    client.get_orders()  # token first, so that only the write meets the slow answer
    sandbox.faults.update(slow_rate=1.0, slow_seconds=0.3)
    sleep.then[1] = sandbox.faults.clear  # a blind retry would go through and create twice
    sent_before = client.stats.requests

    with pytest.raises(AtlasTimeoutError) as caught:
        client.post_invoices([_new_invoice(sandbox, "INV-TIMEOUT-1")])

    assert caught.value.outcome_unknown is True
    assert "look them up by externalId" in caught.value.message
    assert sleep.calls == []
    assert client.stats.retries == 0
    assert client.stats.requests == sent_before + 1  # one send, no resend


def test_a_create_is_not_resent_after_a_5xx(sandbox, client, sleep):
    client.get_orders()
    sandbox.faults.update(error_rate=1.0, error_statuses=[502])
    sleep.then[1] = sandbox.faults.clear
    start = len(sandbox.app.calls)

    with pytest.raises(AtlasServerError) as caught:
        client.post_payments(
            [
                {
                    "invoiceId": min(sandbox.app.dataset.invoices),
                    "externalId": "PAY-5XX-1",
                    "amount": Decimal("10.00"),
                    "paymentDate": "2026-04-14T00:00:00",
                }
            ]
        )

    assert caught.value.outcome_unknown is True
    assert [path for path, _ in api_calls(sandbox, start)] == ["/api/Payment/Post"]
    assert sleep.calls == []


def test_a_create_refused_with_429_is_retried_after_60s(sandbox, client, sleep):
    client.get_orders()
    sandbox.faults.burst_429(1)
    start = len(sandbox.app.calls)

    result = client.post_invoices([_new_invoice(sandbox, "INV-429-1")])

    assert [c.status for c in sandbox.app.calls[start:]] == [429, 200]
    assert sleep.calls == [60.0]
    assert [i.external_id for i in result.records] == ["INV-429-1"]
    invoices = sandbox.app.dataset.invoices.values()
    assert [i["externalId"] for i in invoices].count("INV-429-1") == 1


def test_an_update_is_still_retried_after_a_5xx(sandbox, client, sleep):
    order = next(o for o in sandbox.app.dataset.orders.values() if o["erpCode"] is None)
    record = {
        "id": order["id"],
        "erpCode": "ERP-RETRY-1",
        "registrationDate": order["registrationDate"],
        "dueDate": order["dueDate"],
        "totalAmount": order["totalAmount"],
    }
    client.get_orders()
    sandbox.faults.update(error_rate=1.0, error_statuses=[503])
    sleep.then[1] = sandbox.faults.clear

    result = client.post_orders([record])

    assert [o.erp_code for o in result.records] == ["ERP-RETRY-1"]
    assert len(sleep.calls) == 1


def test_outcome_unknown_survives_pickling():
    error = AtlasTimeoutError("no answer", endpoint="/api/Invoice/Post")
    error.outcome_unknown = True

    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes

    assert copy.outcome_unknown is True and copy.endpoint == "/api/Invoice/Post"
    plain = pickle.loads(pickle.dumps(AtlasTimeoutError("x", endpoint="/e")))  # noqa: S301
    assert plain.outcome_unknown is False


def test_floats_are_refused_before_anything_is_sent(sandbox, client):
    order = next(iter(sandbox.app.dataset.orders.values()))
    record = {
        "id": order["id"],
        "registrationDate": order["registrationDate"],
        "dueDate": order["dueDate"],
        "totalAmount": 0.1 + 0.2,  # 0.30000000000000004 on the wire
    }

    with pytest.raises(TypeError, match="Decimal, not float"):
        client.post_orders([record])

    assert sandbox.app.calls == []


class _Elsewhere:
    """Another host (localhost vs 127.0.0.1) that records whatever reaches it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str], bytes]] = []
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        request = Request(environ)
        with self.lock:
            self.seen.append((request.path, dict(request.headers), request.get_data()))
        return Response('{"success": true, "data": []}', mimetype="application/json")(
            environ, start_response
        )


def test_the_password_never_follows_a_redirect(sleep, clock):
    elsewhere = _Elsewhere()
    with SandboxServer(elsewhere, host="localhost") as other:

        def redirect(environ, start_response):
            target = other.url.replace("127.0.0.1", "localhost") + Request(environ).path
            return Response("", status=307, headers={"Location": target})(environ, start_response)

        with SandboxServer(redirect) as atlas:
            client = AtlasClient(
                base_url=atlas.url,
                username="svc",
                password="secret-password-42",
                sleep=sleep,
                clock=clock,
            )
            with pytest.raises((AtlasProtocolError, AtlasAuthenticationError)):
                client.get_orders()

    assert elsewhere.seen == []


def test_full_ibans_stay_out_of_reprs():
    counterparty = Counterparty.from_json(
        {"id": 42, "name": "Energy Trader", "iban": "DE89370400440532013000"}
    )
    item = OrderItem.from_json(
        {
            "id": 9001,
            "orderId": 210,
            "netAmount": 1,
            "vatAmount": 0,
            "cashflow": 0,
            "status": 2,
            "iban": "DE89370400440532013000",
        }
    )

    assert counterparty.iban == "DE89370400440532013000"
    assert "0532013000" not in repr(counterparty)
    assert "0532013000" not in repr(item)


def test_a_create_stopped_by_the_pacer_is_known_not_sent(sandbox, make_client, sleep):
    pacer = memory_pacer(requests_per_minute=2, max_wait_seconds=0, sleep=sleep)
    client = make_client(limiter=pacer)
    client.get_orders()  # token + orders: the window is full

    with pytest.raises(AtlasPacingError) as caught:
        client.post_invoices([_new_invoice(sandbox, "INV-PACED-1")])

    assert caught.value.outcome_unknown is False  # nothing left this process
    assert [c.path for c in sandbox.app.calls] == [TOKEN, "/api/Order/GetByIds"]
    pacer.close()
