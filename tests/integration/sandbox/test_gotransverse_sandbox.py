"""The AR Ledger sandbox speaks the spec: raw HTTP against it, no client in between."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import requests
from werkzeug.test import Client

from integration import wire
from integration.sandbox.clock import SandboxClock
from integration.sandbox.faults import FaultConfig
from integration.sandbox.gotransverse import GotransverseSandbox

BULK = "/ledgers/1/accounting-transactions/bulk"


class Raw:
    """Tiny raw-HTTP helper: JSON with Decimal both ways, the sandbox key unless told otherwise."""

    def __init__(self, served):
        self.served = served

    def __call__(self, method: str, path: str, *, key: str | None = "default", **kwargs: Any):
        headers = {}
        if key == "default":
            headers["X-Api-Key"] = self.served.api_key
        elif key is not None:
            headers["X-Api-Key"] = key
        if "json" in kwargs:
            kwargs["data"] = wire.dumps(kwargs.pop("json"))
            headers["Content-Type"] = "application/json"
        response = requests.request(
            method, self.served.url + path, headers=headers, timeout=10, **kwargs
        )
        response.data = wire.loads(response.content) if response.content.strip() else None
        return response


@pytest.fixture
def raw(gotransverse_sandbox) -> Raw:
    return Raw(gotransverse_sandbox)


def entry(number: str, credit: bool, amount: str, on: str = "2026-04-10") -> dict:
    return {
        "gl_account_num": number,
        "credit": credit,
        "amount": {"amount": Decimal(amount), "currency": "EUR"},
        "occurred_on": on,
    }


def transaction(reference: str, *entries: dict) -> dict:
    return {"source_transaction_reference": reference, "entries": list(entries)}


def balanced(reference: str, on: str = "2026-04-10") -> dict:
    return transaction(
        reference, entry("1200", False, "119.00", on), entry("4001", True, "119.00", on)
    )


def test_every_call_needs_the_api_key(raw):
    missing = raw("GET", "/ledgers/1", key=None)
    wrong = raw("GET", "/ledgers/1", key="nope")

    assert missing.status_code == wrong.status_code == 401
    assert missing.data == {
        "code": "UNAUTHORIZED",
        "message": "Authentication failed: missing or wrong X-Api-Key",
    }


def test_paging_headers_and_page_size_capped_at_fifty(raw):
    for n in range(3):
        raw("POST", BULK, params={"auto_post": "true"}, json=[balanced(f"R-{n}")] * 20)

    first = raw("GET", "/ledgers/1/accounting-entries", params={"page_size": "200"})
    last = raw(
        "GET", "/ledgers/1/accounting-entries", params={"page_size": "200", "page_number": "3"}
    )
    default = raw("GET", "/ledgers/1/accounting-entries")

    assert len(first.data) == 50
    assert first.headers["X-Total-Count"] == "120"
    assert first.headers["X-Elements-Count"] == "50"
    assert first.headers["X-Total-Pages"] == "3"
    assert last.headers["X-Elements-Count"] == "20" and len(last.data) == 20
    assert len(default.data) == 25 and default.headers["X-Total-Pages"] == "5"


def test_bad_paging_values_are_refused(raw):
    zero = raw("GET", "/accounts", params={"page_size": "0"})
    text = raw("GET", "/accounts", params={"page_number": "one"})

    assert zero.status_code == text.status_code == 400
    assert zero.data["code"] == "BAD_REQUEST"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (transaction("X", entry("1200", False, "5.00"), entry("4099", True, "5.00")), "'4099'"),
        (
            transaction("X", entry("1200", False, "5.00"), entry("4000", True, "5.00")),
            "'4000' is not a posting account",
        ),
        (
            transaction("X", entry("1200", False, "5.00"), entry("4001", True, "4.99")),
            "not balanced: debits 5.00 EUR, credits 4.99 EUR",
        ),
        (transaction("X"), "no entries"),
        (
            transaction("X", entry("1200", False, "5.001"), entry("4001", True, "5.001")),
            "more than 2 decimal places",
        ),
        (
            transaction(
                "X",
                entry("1200", False, "5.00", on="2027-03-01"),
                entry("4001", True, "5.00", on="2027-03-01"),
            ),
            "no accounting period covers 2027-03-01",
        ),
    ],
    ids=["unknown-account", "non-posting", "unbalanced", "empty", "sub-cent", "beyond-calendar"],
)
def test_each_invalid_transaction_fails_alone(gotransverse_sandbox, raw, bad, message):
    answer = raw(
        "POST", BULK, params={"auto_post": "true"}, json=[balanced("OK-1"), bad, balanced("OK-2")]
    )

    assert answer.status_code == 200
    ok_1, failed, ok_2 = answer.data
    assert failed["code"] == 400 and message in failed["error_message"]
    assert failed["id"] is None and failed["source_transaction_reference"] == "X"
    assert ok_1["code"] == ok_2["code"] == 201 and ok_1["error_message"] is None
    posted = gotransverse_sandbox.app.posted_transactions()
    assert [t.source_transaction_reference for t in posted] == ["OK-1", "OK-2"]


def test_closed_period_rolls_forward_to_next_open_period(gotransverse_sandbox, raw):
    raw("PUT", "/ledgers/1/calendar/years/2/accounting-periods/203/close")

    answer = raw("POST", BULK, params={"auto_post": "true"}, json=[balanced("OLD", "2026-02-14")])

    (result,) = answer.data
    assert {e["accounting_period_id"] for e in result["entries"]} == {204}  # March closed too
    assert result["entries"][0]["occurred_on"] == "2026-02-14T00:00:00Z"
    stored = gotransverse_sandbox.app.transaction(result["id"])
    assert (stored.requested_period_id, stored.posted_period_id, stored.rolled_forward) == (
        202,
        204,
        True,
    )


def test_no_open_period_left_is_a_per_transaction_conflict(gotransverse_sandbox, raw):
    for period in gotransverse_sandbox.app.periods:
        gotransverse_sandbox.app.set_period_open(period.id, False)

    (result,) = raw("POST", BULK, params={"auto_post": "true"}, json=[balanced("LATE")]).data

    assert result["code"] == 409 and "no later period is open" in result["error_message"]


def test_duplicate_source_reference_is_accepted(gotransverse_sandbox, raw):
    raw("POST", BULK, params={"auto_post": "true"}, json=[balanced("DUP")])
    raw("POST", BULK, params={"auto_post": "true"}, json=[balanced("DUP")])

    assert len(gotransverse_sandbox.app.transactions_with_reference("DUP")) == 2


def test_posted_transactions_cannot_be_changed_or_deleted(raw):
    (draft,) = raw("POST", BULK, json=[balanced("D-1")]).data
    path = f"/ledgers/1/draft-accounting-transactions/{draft['id']}"
    posted = raw("POST", path + "/post")

    update = raw("PUT", path, json={"entries": []})
    delete = raw("DELETE", path)
    post_again = raw("POST", path + "/post")
    bulk_delete = raw(
        "DELETE", BULK, params={"id_type": "SOURCE_TRANSACTION_REFERENCE"}, json=["D-1"]
    )

    assert posted.status_code == 200 and posted.data["entries"][0]["posted_on"]
    assert update.status_code == 409 and update.data["code"] == "TRANSACTION_POSTED"
    assert delete.status_code == 400 and delete.data["code"] == "TRANSACTION_POSTED"
    assert post_again.status_code == 400
    assert bulk_delete.status_code == 409
    assert raw("GET", f"/ledgers/1/accounting-transactions/{draft['id']}").status_code == 200


def test_bulk_post_answers_each_id(raw):
    raw("POST", BULK, json=[balanced("P-1"), balanced("P-2")])
    raw("POST", BULK + "/post", params={"id_type": "SOURCE_TRANSACTION_REFERENCE"}, json=["P-2"])

    answer = raw(
        "POST",
        BULK + "/post",
        params={"id_type": "SOURCE_TRANSACTION_REFERENCE"},
        json=["P-1", "P-2", "NOPE"],
    )

    assert [(r["code"], r["source_transaction_reference"]) for r in answer.data] == [
        (200, "P-1"),
        (409, "P-2"),
        (404, "NOPE"),
    ]
    assert raw("POST", BULK + "/post", json=["P-1"]).status_code == 400  # id_type is required


def test_drafts_filter_by_source_reference_and_batch(raw):
    raw("POST", BULK, json=[balanced("F-1"), balanced("F-2")])

    found = raw(
        "GET",
        "/ledgers/1/draft-accounting-transactions",
        params={"source_transaction_reference": "F-2"},
    )

    assert [t["source_transaction_reference"] for t in found.data] == ["F-2"]
    assert found.data[0]["entries"][0]["posted_on"] is None


def test_balance_moves_with_posted_entries_only(raw):
    raw("POST", BULK, json=[balanced("DRAFT")])
    before = raw("GET", "/ledgers/1/balance").data
    raw("POST", BULK, params={"auto_post": "true"}, json=[balanced("POSTED")])

    after = raw("GET", "/ledgers/1/balance", params={"include_parent_accounts": "INCLUDE"}).data

    assert before == []
    amounts = {(b["gl_account_number"]): b["amounts"][0]["amount"] for b in after}
    assert amounts == {
        "1200": Decimal("119.00"),
        "4001": Decimal("-119.00"),
        "4000": Decimal("-119.00"),
    }


def test_zero_amount_lines_are_dropped_as_the_ledger_setting_says(gotransverse_sandbox, raw):
    zero_line = entry("6000", False, "0.00")
    (result,) = raw(
        "POST",
        BULK,
        params={"auto_post": "true"},
        json=[transaction("Z", *balanced("Z")["entries"], zero_line)],
    ).data

    assert [e["gl_account_num"] for e in result["entries"]] == ["1200", "4001"]


def test_calls_are_recorded_without_the_key(gotransverse_sandbox, raw):
    raw("POST", BULK, params={"auto_post": "true"}, json=[balanced("C-1")])

    (call,) = gotransverse_sandbox.app.calls_to(BULK, "POST")
    assert call.query == {"auto_post": "true"} and call.status == 200
    assert call.body[0]["entries"][0]["amount"]["amount"] == Decimal("119.00")
    assert gotransverse_sandbox.api_key not in repr(call)
    gotransverse_sandbox.app.reset_calls()
    assert list(gotransverse_sandbox.app.calls) == []


def test_injected_503s_follow_the_shared_fault_config(make_gotransverse_sandbox):
    served = make_gotransverse_sandbox(
        faults=FaultConfig(seed=1, error_rate=0.5, error_statuses=(503,))
    )
    raw = Raw(served)

    statuses = [raw("GET", "/ledgers/1").status_code for _ in range(40)]

    assert set(statuses) == {200, 503}
    assert 8 <= statuses.count(503) <= 32
    failed = next(c for c in served.app.calls if c.status == 503)
    assert failed.path == "/ledgers/1"
    body = raw("GET", "/_sandbox/faults").data
    assert body["applied"]["error"] == statuses.count(503)


def test_slow_answers_use_the_injected_sleep():
    slept: list[float] = []
    app = GotransverseSandbox(
        clock=SandboxClock(frozen=True),
        faults=FaultConfig(slow_rate=1.0, slow_seconds=2.5),
        fault_sleep=slept.append,
    )

    response = Client(app).get("/ledgers/1", headers={"X-Api-Key": "sandbox-api-key"})

    assert response.status_code == 200 and slept == [2.5]


def test_unknown_ids_answer_the_spec_error_shape(raw):
    assert raw("GET", "/ledgers/2").data["code"] == "NOT_FOUND"
    assert raw("GET", "/accounts/999").status_code == 404
    assert raw("GET", "/glruns/999").status_code == 404
    assert raw("PUT", "/ledgers/1/calendar/years/2/accounting-periods/999/open").status_code == 400
    assert raw("GET", "/no-such-endpoint").status_code == 404


def test_control_endpoints_need_no_key_and_are_not_recorded(gotransverse_sandbox, raw):
    raw("POST", BULK, params={"auto_post": "true"}, json=[balanced("OLD", "2025-05-05")])

    (stored,) = raw("GET", "/_sandbox/transactions", key=None).data["transactions"]
    calls = raw("GET", "/_sandbox/calls", key=None).data["calls"]
    raw("POST", "/_sandbox/faults", key=None, json={"error_rate": 1.0})
    faulted = raw("GET", "/ledgers/1")
    raw("POST", "/_sandbox/faults", key=None, json={"clear": True})

    assert (stored["status"], stored["rolled_forward"], stored["posted_period_id"]) == (
        "POSTED",
        True,
        203,
    )
    assert [c["path"] for c in calls] == [BULK]
    assert faulted.status_code == 503 and faulted.data["code"] == "SERVICE_UNAVAILABLE"
    assert raw("GET", "/ledgers/1").status_code == 200


def test_controls_answer_loopback_only():
    app = GotransverseSandbox(api_key="k")
    from_afar = Client(app).get("/_sandbox/calls", environ_base={"REMOTE_ADDR": "10.0.0.7"})
    from_here = Client(app).get("/_sandbox/calls", environ_base={"REMOTE_ADDR": "127.0.0.1"})

    assert from_afar.status_code == 403
    assert from_here.status_code == 200
