"""GotransverseClient against the AR Ledger sandbox over real HTTP (and a scripted session for
transport failures the sandbox cannot produce on demand)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError

from integration import wire
from integration.gotransverse import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    EntryInput,
    GotransverseClient,
    GotransverseConnectionError,
    GotransverseTimeoutError,
    NotFoundError,
    ServiceUnavailableError,
    TransactionInput,
)
from integration.sandbox.faults import FaultConfig

LEDGER = 1
APRIL = date(2026, 4, 15)  # in an open period (April 2026, id 204)


class FakeSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def make_client(sandbox, **options) -> GotransverseClient:
    options.setdefault("sleep", FakeSleep())
    options.setdefault("api_key", sandbox.api_key)
    return GotransverseClient(base_url=sandbox.url, **options)


def line(number: str, *, credit: bool, amount: str, on: date = APRIL, **extra) -> EntryInput:
    return EntryInput(
        gl_account_num=number,
        credit=credit,
        amount=Decimal(amount),
        currency="EUR",
        occurred_on=on,
        **extra,
    )


def sale(reference: str, *, net: str = "100.00", vat: str = "19.00", on: date = APRIL):
    gross = str(Decimal(net) + Decimal(vat))
    return TransactionInput(
        source_transaction_reference=reference,
        source_batch_reference="atlas-orders",
        entries=(
            line("1200", credit=False, amount=gross, on=on, billing_account_num="CUST-42"),
            line("4001", credit=True, amount=net, on=on),
            line("2200", credit=True, amount=vat, on=on),
        ),
    )


# --- paging -------------------------------------------------------------------------------------


def test_list_follows_total_pages_lazily_and_counts_requests(gotransverse_sandbox):
    client = make_client(gotransverse_sandbox, page_size=5)

    accounts = client.list_gl_accounts()
    assert accounts.requests == 0  # nothing fetched until iterated
    numbers = [a.number for a in accounts]

    assert len(numbers) == 16 and numbers[0] == "1000" and numbers[-1] == "6000"
    assert accounts.requests == 4 and accounts.total_pages == 4 and accounts.total_count == 16
    sent = [c.query for c in gotransverse_sandbox.app.calls_to("/accounts")]
    assert sent == [{"page_number": str(n), "page_size": "5"} for n in (1, 2, 3, 4)]


def test_empty_list_costs_one_request(gotransverse_sandbox):
    client = make_client(gotransverse_sandbox)

    drafts = client.list_draft_transactions(LEDGER)

    assert drafts.all() == [] and drafts.requests == 1


def test_page_size_above_fifty_is_capped_not_sent(gotransverse_sandbox):
    client = make_client(gotransverse_sandbox, page_size=500)

    client.list_gl_accounts().all()

    (call,) = gotransverse_sandbox.app.calls_to("/accounts")
    assert call.query["page_size"] == "50"


def test_filters_are_sent_as_the_spec_names_them(gotransverse_sandbox):
    client = make_client(gotransverse_sandbox)

    posting = client.list_gl_accounts(
        type=["REVENUE", "EXPENSE"], is_posting_account=False, chart_of_account=[1]
    ).all()

    assert sorted(a.number for a in posting) == ["4000", "5000"]
    (call,) = gotransverse_sandbox.app.calls_to("/accounts")
    assert call.query == {
        "type": "REVENUE,EXPENSE",
        "is_posting_account": "false",
        "chart_of_account": "1",
        "page_number": "1",
        "page_size": "50",
    }


# --- reference data -----------------------------------------------------------------------------


def test_ledger_calendar_and_chart_are_typed(gotransverse_sandbox):
    client = make_client(gotransverse_sandbox)

    ledger = client.get_ledger(LEDGER)
    chart = client.get_ledger_chart_of_accounts(LEDGER)
    designations = client.list_account_designations()

    assert (ledger.id, ledger.conversion_currency, ledger.create_zero_amount_entries) == (
        1,
        "EUR",
        False,
    )
    assert [y.name for y in ledger.years] == ["FY2025", "FY2026"]
    periods = ledger.accounting_periods
    assert len(periods) == 24
    assert next(p.name for p in periods if p.open) == "March 2026"
    assert ledger.period_for(date(2026, 2, 10)).open is False
    assert periods[0].year_id == 1 and periods[0].start_date == date(2025, 1, 1)
    power = chart.account("4001")
    assert power.parent_number == "4000" and power.is_posting_account is True
    assert chart.account("4000").is_posting_account is False
    assert chart.account("4099") is None  # an ATLAS-only account
    assert {c.name for c in chart.account_categories} >= {"Assets", "Revenue"}
    assert "ACCOUNTS_RECEIVABLE" in {d.name for d in designations}


def test_period_close_and_open_with_history(gotransverse_sandbox):
    client = make_client(gotransverse_sandbox)

    closed = client.close_accounting_period(LEDGER, 2, 203)
    assert closed.period_for(date(2026, 3, 1)).open is False
    reopened = client.open_accounting_period(LEDGER, 2, 203)
    assert reopened.period_for(date(2026, 3, 1)).open is True

    history = client.list_accounting_period_history(LEDGER, 2, 203).all()
    assert [h.open for h in history] == [True, False, True]
    assert history[-1].end_date is None


def test_gl_runs_and_collector_runs_with_their_errors(gotransverse_sandbox):
    client = make_client(gotransverse_sandbox)

    runs = client.list_gl_runs().all()
    failed = [r for r in client.list_gl_runs(status="ERROR")]
    errors = client.list_gl_run_errors(failed[0].id).all()
    created = client.create_gl_run(ledger_id=LEDGER, run_to_date=date(2026, 10, 31))
    collector_runs = client.list_collector_runs().all()
    collector_errors = client.list_collector_run_errors(collector_runs[1].id).all()

    assert {r.status for r in runs} == {"COMPLETE", "ERROR"}
    assert len(errors) == failed[0].num_errors == 2 and errors[0].gl_run_id == failed[0].id
    assert client.get_gl_run(created.id).ledger_id == LEDGER
    assert collector_errors[0].collector_run_id == collector_runs[1].id
    assert client.list_collectors(group="BILLING").all()[0].name == "BILLING_EVENTS"


# --- bulk transactions ----------------------------------------------------------------------------


def test_partial_bulk_failure_is_reported_per_input(gotransverse_sandbox):
    client = make_client(gotransverse_sandbox)
    unknown_account = TransactionInput(
        source_transaction_reference="ORDER-2",
        entries=(
            line("1200", credit=False, amount="10.00"),
            line("4099", credit=True, amount="10.00"),
        ),
    )

    outcome = client.create_transactions_bulk(
        LEDGER, [sale("ORDER-1"), unknown_account, sale("ORDER-3")], auto_post=True
    )

    assert [r.index for r in outcome] == [0, 1, 2]
    assert [r.requested for r in outcome] == ["ORDER-1", "ORDER-2", "ORDER-3"]
    assert [r.succeeded for r in outcome] == [True, False, True]
    failed = outcome[1]
    assert failed.id is None and failed.code == 400
    assert "4099" in failed.error_message
    assert outcome.for_reference("ORDER-3")[0].id == outcome[2].id
    stored = gotransverse_sandbox.app.posted_transactions()
    assert [t.source_transaction_reference for t in stored] == ["ORDER-1", "ORDER-3"]
    assert not outcome.all_succeeded and len(outcome.failed) == 1


def test_bulk_request_is_sent_exactly_with_exact_decimals(gotransverse_sandbox):
    client = make_client(gotransverse_sandbox)

    client.create_transactions_bulk(
        LEDGER, [sale("ORDER-9", net="0.10", vat="0.20")], auto_post=False
    )

    (call,) = gotransverse_sandbox.app.calls_to("/ledgers/1/accounting-transactions/bulk")
    assert call.method == "POST" and call.query == {"auto_post": "false"}
    assert call.body == [
        {
            "source_batch_reference": "atlas-orders",
            "source_transaction_reference": "ORDER-9",
            "entries": [
                {
                    "gl_account_num": "1200",
                    "credit": False,
                    "amount": {"amount": Decimal("0.30"), "currency": "EUR"},
                    "billing_account_num": "CUST-42",
                    "occurred_on": "2026-04-15T00:00:00Z",
                },
                {
                    "gl_account_num": "4001",
                    "credit": True,
                    "amount": {"amount": Decimal("0.10"), "currency": "EUR"},
                    "occurred_on": "2026-04-15T00:00:00Z",
                },
                {
                    "gl_account_num": "2200",
                    "credit": True,
                    "amount": {"amount": Decimal("0.20"), "currency": "EUR"},
                    "occurred_on": "2026-04-15T00:00:00Z",
                },
            ],
        }
    ]


def test_bulk_answer_out_of_order_is_matched_by_reference():
    from integration.gotransverse.client import _match_bulk

    body = [
        {"id": 2, "source_transaction_reference": "B", "code": 0, "error_message": None},
        {"id": 1, "source_transaction_reference": "A", "code": 201, "error_message": None},
    ]

    outcome = _match_bulk(body, ["A", "B", "C"], endpoint="POST bulk", match_on_reference=True)

    assert [(r.index, r.id, r.answered) for r in outcome] == [
        (0, 1, True),
        (1, 2, True),
        (2, None, False),
    ]
    assert [r.succeeded for r in outcome] == [True, True, False]
    assert outcome.unanswered[0].requested == "C" and not outcome.unmatched


def test_closed_period_transaction_is_posted_into_next_open_period(gotransverse_sandbox):
    client = make_client(gotransverse_sandbox)

    (result,) = client.create_transactions_bulk(
        LEDGER, [sale("ORDER-OLD", on=date(2025, 12, 20))], auto_post=True
    )

    assert result.succeeded
    assert result.accounting_period_ids == {203}  # March 2026, the first open period
    posted = client.get_transaction(LEDGER, result.id)
    assert posted.entries[0].occurred_on.date() == date(2025, 12, 20)
    stored = gotransverse_sandbox.app.transaction(result.id)
    assert stored.rolled_forward and stored.requested_period_id == 112


def test_duplicate_source_reference_is_accepted_and_findable(gotransverse_sandbox):
    client = make_client(gotransverse_sandbox)

    client.create_transactions_bulk(LEDGER, [sale("ORDER-7")], auto_post=True)
    client.create_transactions_bulk(LEDGER, [sale("ORDER-7")], auto_post=True)

    found = client.find_transactions_by_reference(LEDGER, "ORDER-7")
    assert len(found) == 2 and found[0].id != found[1].id
    assert all(t.total_debits == t.total_credits == Decimal("119.00") for t in found)


def test_entries_and_balance_after_posting(gotransverse_sandbox):
    client = make_client(gotransverse_sandbox)
    client.create_transactions_bulk(
        LEDGER, [sale("ORDER-1"), sale("ORDER-2", net="0.10", vat="0.02")], auto_post=True
    )

    entries = client.list_accounting_entries(LEDGER, source_transaction_reference="ORDER-2").all()
    balance = {b.gl_account_number: b for b in client.get_balance(LEDGER)}
    revenue = client.get_balance(LEDGER, gl_account_number="4001", amount_type="CREDIT")

    assert [(e.gl_account_num, e.credit, e.amount.amount) for e in entries] == [
        ("1200", False, Decimal("0.12")),
        ("4001", True, Decimal("0.10")),
        ("2200", True, Decimal("0.02")),
    ]
    assert all(e.id and e.posted_on and e.accounting_period_id == 204 for e in entries)
    assert balance["1200"].amount_in("EUR") == Decimal("119.12")
    assert balance["2200"].amount_in("EUR") == Decimal("-19.02")
    assert revenue[0].amounts[0].amount == Decimal("100.10")
    call = gotransverse_sandbox.app.calls_to("/ledgers/1/balance")[-1]
    assert call.query == {"gl_account_number": "4001", "amount_type": "CREDIT"}


# --- drafts ---------------------------------------------------------------------------------------


def test_draft_lifecycle_and_posted_transactions_are_immutable(gotransverse_sandbox):
    client = make_client(gotransverse_sandbox)
    app = gotransverse_sandbox.app
    created = client.create_transactions_bulk(
        LEDGER, [sale("DRAFT-1"), sale("DRAFT-2")], auto_post=False
    )
    assert all(r.succeeded for r in created)

    (draft,) = client.find_drafts_by_reference(LEDGER, "DRAFT-1")
    receivables, revenue = (
        next(a for a in client.list_gl_accounts(account_number=n)) for n in ("1200", "4002")
    )
    updated = client.update_draft_transaction(
        LEDGER,
        draft.id,
        entries=[
            EntryInput(
                gl_account_id=receivables.id,
                credit=False,
                amount=Decimal("50.00"),
                currency="EUR",
                occurred_on=APRIL,
            ),
            EntryInput(
                gl_account_id=revenue.id,
                credit=True,
                amount=Decimal("50.00"),
                currency="EUR",
                occurred_on=APRIL,
            ),
        ],
    )
    assert [e.gl_account_num for e in updated.entries] == ["1200", "4002"]
    assert updated.entries[0].posted_on is None

    posted = client.post_drafts_bulk(LEDGER, ["DRAFT-1"], id_type="SOURCE_TRANSACTION_REFERENCE")
    assert posted[0].succeeded and posted[0].id == draft.id
    assert client.get_transaction(LEDGER, draft.id).total_credits == Decimal("50.00")

    client.delete_drafts_bulk(LEDGER, [created[1].id], id_type="TRANSACTION_ID")
    assert [t.source_transaction_reference for t in app.transactions] == ["DRAFT-1"]

    with pytest.raises(ConflictError) as changed:
        client.update_draft_transaction(LEDGER, draft.id, entries=updated_entries(revenue.id))
    assert changed.value.status == 409 and changed.value.code == "TRANSACTION_POSTED"
    with pytest.raises(BadRequestError):
        client.delete_draft_transaction(LEDGER, draft.id)
    with pytest.raises(ConflictError):
        client.delete_drafts_bulk(LEDGER, ["DRAFT-1"], id_type="SOURCE_TRANSACTION_REFERENCE")
    again = client.post_drafts_bulk(LEDGER, [draft.id], id_type="TRANSACTION_ID")
    assert again[0].failed and again[0].code == 409
    assert len(app.posted_transactions()) == 1


def updated_entries(account_id: int) -> list[EntryInput]:
    return [
        EntryInput(
            gl_account_id=account_id,
            credit=flag,
            amount=Decimal("1.00"),
            currency="EUR",
            occurred_on=APRIL,
        )
        for flag in (False, True)
    ]


def test_single_draft_create_post_and_delete(gotransverse_sandbox):
    client = make_client(gotransverse_sandbox)
    bank = next(iter(client.list_gl_accounts(account_number="1000")))

    first = client.create_draft_transaction(
        LEDGER, entries=updated_entries(bank.id), source_transaction_reference="PAY-1"
    )
    second = client.create_draft_transaction(LEDGER, entries=updated_entries(bank.id))
    posted = client.post_draft_transaction(LEDGER, first.id)
    client.delete_draft_transaction(LEDGER, second.id)

    assert posted.id == first.id and posted.entries[0].id is not None
    with pytest.raises(NotFoundError):
        client.get_draft_transaction(LEDGER, second.id)
    with pytest.raises(BadRequestError):
        client.post_draft_transaction(LEDGER, first.id)


# --- errors and retries -----------------------------------------------------------------------


def test_wrong_api_key_is_an_authentication_error(make_gotransverse_sandbox):
    sandbox = make_gotransverse_sandbox()
    client = make_client(sandbox, api_key="wrong-key")

    with pytest.raises(AuthenticationError) as caught:
        client.get_ledger(LEDGER)

    error = caught.value
    assert (error.status, error.code, error.retryable) == (401, "UNAUTHORIZED", False)
    assert error.endpoint == "GET /ledgers/1" and "X-Api-Key" in error.message
    assert client.stats.requests == 1 and client.stats.retries == 0


def test_not_found_and_bad_request_are_not_retried(gotransverse_sandbox):
    sleep = FakeSleep()
    client = make_client(gotransverse_sandbox, sleep=sleep)

    with pytest.raises(NotFoundError) as missing:
        client.get_ledger(99)
    with pytest.raises(BadRequestError) as invalid:
        client.create_draft_transaction(LEDGER, entries=updated_entries(999))

    assert missing.value.status == 404 and missing.value.code == "NOT_FOUND"
    assert invalid.value.code == "VALIDATION_ERROR" and "999" in invalid.value.message
    assert client.stats.requests == 2 and sleep.waits == []


def test_503_is_retried_with_capped_backoff_then_raised(make_gotransverse_sandbox):
    sandbox = make_gotransverse_sandbox(faults=FaultConfig(error_rate=1.0, error_statuses=(503,)))
    sleep = FakeSleep()
    client = make_client(sandbox, sleep=sleep, max_retries=4, backoff_initial=1.0, backoff_max=3.0)

    with pytest.raises(ServiceUnavailableError) as caught:
        client.get_ledger(LEDGER)

    assert caught.value.retryable and caught.value.status == 503
    assert client.stats.requests == 5 and client.stats.retries == 4
    assert len(sleep.waits) == 4 and all(0 < w <= 3.0 for w in sleep.waits)
    assert 1.0 <= sleep.waits[0] <= 2.0


def test_503_then_success_returns_the_answer(make_gotransverse_sandbox):
    faults = FaultConfig(error_rate=0.0, error_statuses=(503,))
    sandbox = make_gotransverse_sandbox(faults=faults)

    def recover(seconds: float) -> None:
        faults.update(error_rate=0.0)  # the ledger is back by the time the client retries

    client = make_client(sandbox, sleep=recover)
    faults.update(error_rate=1.0)
    assert client.get_ledger(LEDGER).id == LEDGER
    assert client.stats.requests == 2 and client.stats.retries == 1


class ScriptedSession(requests.Session):
    """Raises the scripted exceptions, then sends for real."""

    def __init__(self, *failures: Exception):
        super().__init__()
        self.failures = list(failures)
        self.attempts = 0

    def request(self, method, url, **kwargs):
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        return super().request(method, url, **kwargs)


def test_timeouts_on_reads_are_retried(gotransverse_sandbox):
    session = ScriptedSession(requests.ReadTimeout(), requests.ReadTimeout())
    client = make_client(gotransverse_sandbox, session=session)

    assert client.get_ledger(LEDGER).id == LEDGER
    assert session.attempts == 3 and client.stats.retries == 2


def test_timeout_after_sending_a_bulk_create_is_not_retried(gotransverse_sandbox):
    session = ScriptedSession(requests.ReadTimeout())
    client = make_client(gotransverse_sandbox, session=session)

    with pytest.raises(GotransverseTimeoutError) as caught:
        client.create_transactions_bulk(LEDGER, [sale("ORDER-1")], auto_post=True)

    assert caught.value.outcome_unknown and not caught.value.retryable
    assert session.attempts == 1


def test_refused_connection_on_a_bulk_create_is_retried(gotransverse_sandbox):
    refused = requests.ConnectionError(
        MaxRetryError(None, "/bulk", NewConnectionError(None, "Connection refused"))
    )
    session = ScriptedSession(refused)
    client = make_client(gotransverse_sandbox, session=session)

    outcome = client.create_transactions_bulk(LEDGER, [sale("ORDER-1")], auto_post=True)

    assert outcome[0].succeeded and session.attempts == 2
    assert len(gotransverse_sandbox.app.posted_transactions()) == 1


def test_connection_errors_exhaust_retries_as_typed_error(gotransverse_sandbox):
    session = ScriptedSession(*[requests.ConnectionError("reset")] * 3)
    client = make_client(gotransverse_sandbox, session=session, max_retries=2)

    with pytest.raises(GotransverseConnectionError) as caught:
        client.get_ledger(LEDGER)

    assert caught.value.status is None and caught.value.retryable
    assert session.attempts == 3


def test_unreadable_record_is_kept_aside_not_fatal():
    from integration.gotransverse.paging import Page, Paginator
    from integration.gotransverse.records import GLAccount

    page = Page(
        items=[
            {"id": 1, "number": "1000", "is_posting_account": True, "surprise": "kept"},
            {"id": 2, "number": "1200"},
        ],
        total_count=2,
        elements_count=2,
        total_pages=1,
    )
    accounts = Paginator(lambda params: page, GLAccount.from_json)

    (good,) = accounts.all()
    assert good.raw["surprise"] == "kept"
    (error,) = accounts.errors
    assert error.field == "is_posting_account" and error.record_id == 2


def test_errors_survive_pickling_for_the_task_queue():
    import pickle

    error = ConflictError("posted", status=409, code="TRANSACTION_POSTED", endpoint="PUT /x")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes

    assert (type(copy), copy.status, copy.code, copy.endpoint) == (
        ConflictError,
        409,
        "TRANSACTION_POSTED",
        "PUT /x",
    )


def test_wire_never_turns_amounts_into_floats():
    parsed = wire.loads('{"amount": {"amount": 0.1, "currency": "EUR"}}')
    assert parsed["amount"]["amount"] == Decimal("0.1")
    with pytest.raises(TypeError):
        EntryInput(gl_account_num="1000", credit=True, amount=0.1, currency="EUR")


def test_post_by_a_reference_two_drafts_share_is_not_guessed(gotransverse_sandbox):
    client = make_client(gotransverse_sandbox)
    client.create_transactions_bulk(LEDGER, [sale("TWIN"), sale("TWIN")], auto_post=False)

    outcome = client.post_drafts_bulk(LEDGER, ["TWIN"], id_type="SOURCE_TRANSACTION_REFERENCE")

    # Two transactions answered one reference: the client cannot say which is "the" result.
    (result,) = outcome
    assert not result.answered and not result.succeeded
    assert len(outcome.unmatched) == 2 and all(r.index is None for r in outcome.unmatched)
    assert not outcome.all_succeeded


def test_transaction_filters_by_date_and_booked_period(gotransverse_sandbox):
    client = make_client(gotransverse_sandbox)
    client.create_transactions_bulk(
        LEDGER,
        [sale("APR"), sale("MAY", on=date(2026, 5, 2)), sale("OLD", on=date(2025, 7, 1))],
        auto_post=True,
    )

    april = client.list_transactions(
        LEDGER, transaction_date_from=date(2026, 4, 1), transaction_date_to=date(2026, 4, 30)
    ).all()
    booked_in_march = client.list_transactions(
        LEDGER,
        accounting_period_from=date(2026, 3, 1),
        accounting_period_to=date(2026, 3, 31),
    ).all()
    may_revenue = client.list_accounting_entries(
        LEDGER, gl_account_number="4001", transaction_date_from=date(2026, 5, 1)
    ).all()

    assert [t.source_transaction_reference for t in april] == ["APR"]
    assert [t.source_transaction_reference for t in booked_in_march] == ["OLD"]
    assert [(e.source_transaction_reference, e.amount.amount) for e in may_revenue] == [
        ("MAY", Decimal("100.00"))
    ]
    call = gotransverse_sandbox.app.calls_to("/ledgers/1/accounting-transactions")[0]
    assert call.query["transaction_date_to"] == "2026-04-30Z"  # the spec's date form: the whole day
