"""Review fixes of the AR Ledger client: a create is never resent blindly (503 included), a
lookup by reference never says "absent" when it could not read what it found, the API key never
follows a redirect, and amounts go out with exactly two places."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from werkzeug.wrappers import Request, Response

from integration import wire
from integration.gotransverse import (
    EntryInput,
    ServiceUnavailableError,
    TransactionInput,
    UnexpectedResponseError,
)
from integration.gotransverse.records import ID_TYPE_SOURCE_TRANSACTION_REFERENCE
from integration.sandbox.faults import FaultConfig
from integration.sandbox.server import SandboxServer
from tests.integration.gotransverse.test_client import LEDGER, FakeSleep, make_client, sale


def test_a_503_on_a_bulk_create_is_not_resent_blindly(make_gotransverse_sandbox):
    faults = FaultConfig(error_rate=1.0, error_statuses=(503,))
    sandbox = make_gotransverse_sandbox(faults=faults)
    sleep = FakeSleep()
    client = make_client(sandbox, sleep=sleep)

    with pytest.raises(ServiceUnavailableError) as caught:
        client.create_transactions_bulk(LEDGER, [sale("ORDER-503")], auto_post=True)

    assert caught.value.outcome_unknown is True
    assert caught.value.retryable is False
    assert client.stats.requests == 1 and sleep.waits == []
    assert len(sandbox.app.calls_to("/ledgers/1/accounting-transactions/bulk")) == 1


def test_a_503_on_posting_drafts_is_retried(make_gotransverse_sandbox):
    faults = FaultConfig(error_rate=0.0, error_statuses=(503,))
    sandbox = make_gotransverse_sandbox(faults=faults)
    client = make_client(sandbox, sleep=lambda seconds: faults.update(error_rate=0.0))
    client.create_transactions_bulk(LEDGER, [sale("ORDER-D1")], auto_post=False)
    faults.update(error_rate=1.0)

    outcome = client.post_drafts_bulk(
        LEDGER, ["ORDER-D1"], id_type=ID_TYPE_SOURCE_TRANSACTION_REFERENCE
    )

    assert outcome.all_succeeded
    assert client.stats.retries == 1


class _ScriptedLedger:
    """A stand-in ledger answering fixed JSON per path, recording the headers it receives."""

    def __init__(self, answers: dict[str, object]):
        self.answers = answers
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        request = Request(environ)
        with self.lock:
            self.seen.append((request.path, dict(request.headers)))
        body = self.answers.get(request.path, [])
        response = Response(wire.dumps(body), mimetype="application/json")
        response.headers["X-Total-Pages"] = "1"
        return response(environ, start_response)


UNREADABLE_ENTRY = {
    "id": 5,
    "credit": "perhaps",  # not a boolean: the entry cannot be read
    "amount": {"amount": Decimal("119.00"), "currency": "EUR"},
    "transaction_id": "77",
    "source_transaction_reference": "ORDER-1",
}


def test_a_lookup_that_could_not_read_an_entry_does_not_answer_absent():
    ledger = _ScriptedLedger({"/ledgers/1/accounting-entries": [UNREADABLE_ENTRY]})
    with SandboxServer(ledger) as server:
        client = make_client_for(server.url)

        with pytest.raises(UnexpectedResponseError) as caught:
            client.find_transactions_by_reference(LEDGER, "ORDER-1")

    assert caught.value.outcome_unknown is True
    assert "ORDER-1" in str(caught.value)


def test_a_draft_lookup_that_could_not_read_a_draft_does_not_answer_absent():
    unreadable_draft = {"source_transaction_reference": "ORDER-1", "entries": []}  # no id
    ledger = _ScriptedLedger({"/ledgers/1/draft-accounting-transactions": [unreadable_draft]})
    with SandboxServer(ledger) as server:
        client = make_client_for(server.url)

        with pytest.raises(UnexpectedResponseError):
            client.find_drafts_by_reference(LEDGER, "ORDER-1")


def test_the_api_key_never_follows_a_redirect():
    elsewhere = _ScriptedLedger({})
    with SandboxServer(elsewhere, host="localhost") as other:

        def redirect(environ, start_response):
            target = other.url.replace("127.0.0.1", "localhost") + Request(environ).path
            return Response("", status=307, headers={"Location": target})(environ, start_response)

        with SandboxServer(redirect) as ledger:
            client = make_client_for(ledger.url)
            with pytest.raises(UnexpectedResponseError) as caught:
                client.delete_drafts_bulk(
                    LEDGER, ["ORDER-1"], id_type=ID_TYPE_SOURCE_TRANSACTION_REFERENCE
                )

    assert caught.value.status == 307
    assert elsewhere.seen == []


def make_client_for(url: str):
    from integration.gotransverse import GotransverseClient

    return GotransverseClient(base_url=url, api_key="key-that-must-stay-home", sleep=FakeSleep())


def _entry(amount: str, *, credit: bool) -> EntryInput:
    return EntryInput(gl_account_num="1200", credit=credit, amount=Decimal(amount), currency="EUR")


def test_amounts_go_out_with_exactly_two_places():
    transaction = TransactionInput(
        source_transaction_reference="ORDER-2DP",
        entries=(_entry("1E+2", credit=False), _entry("100", credit=True)),
    )

    text = wire.dumps(transaction.to_json())

    assert text.count('"amount": 100.00,') == 2
    assert "E+" not in text


@pytest.mark.parametrize(
    ("amount", "message"),
    [("-10.00", "must not be negative"), ("10.005", "at most 2 decimal places")],
)
def test_a_negative_or_sub_cent_amount_is_refused(amount, message):
    with pytest.raises(ValueError, match=message):
        _entry(amount, credit=False)


def test_the_api_key_stays_out_of_logs_errors_reprs_and_recorded_calls(
    make_gotransverse_sandbox, caplog
):
    import logging

    caplog.set_level(logging.DEBUG)
    faults = FaultConfig(error_rate=1.0, error_statuses=(503,))
    sandbox = make_gotransverse_sandbox(faults=faults)
    key = sandbox.api_key
    client = make_client(sandbox, max_retries=1)
    errors = []
    with pytest.raises(ServiceUnavailableError) as unavailable:
        client.get_ledger(LEDGER)
    errors.append(unavailable.value)
    faults.update(error_rate=0.0)
    client.create_transactions_bulk(LEDGER, [sale("ORDER-K")], auto_post=True)
    assert len(client.find_transactions_by_reference(LEDGER, "ORDER-K")) == 1

    assert caplog.records, "the client logs its retries"
    logged = caplog.text + " ".join(str(vars(record)) for record in caplog.records)
    assert key not in logged
    assert key not in repr(client) and key not in str(vars(client.stats))
    for error in errors:
        assert key not in str(error) and key not in repr(error)
    assert key not in repr(sandbox.app.calls)


def test_an_unreadable_bulk_answer_leaves_the_outcome_unknown():
    ledger = _ScriptedLedger({"/ledgers/1/accounting-transactions/bulk": {"status": "accepted"}})
    with SandboxServer(ledger) as server:
        client = make_client_for(server.url)

        with pytest.raises(UnexpectedResponseError) as caught:
            client.create_transactions_bulk(LEDGER, [sale("ORDER-X")], auto_post=True)

    assert caught.value.outcome_unknown is True
    assert [path for path, _ in ledger.seen] == ["/ledgers/1/accounting-transactions/bulk"]
