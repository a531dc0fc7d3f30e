"""Write-backs to the ATLAS sandbox over HTTP: erpCode, invoices, numbering, retries."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.db import connection
from django.utils.dateparse import parse_datetime

from integration.sandbox.faults import FaultConfig
from ledger_sync.models import (
    InvoiceNumberSequence,
    IssuedInvoice,
    Journal,
    Order,
    OrderState,
    OrderSync,
    PostingSettings,
    WriteBackStep,
)
from ledger_sync.services.invoice_writeback import (
    issued_invoice_record_from_erp,
    issued_invoices_ensure,
)
from ledger_sync.services.remote import atlas_client_from_settings
from ledger_sync.services.write_back_steps import write_back_retry, write_back_steps_open
from ledger_sync.services.writeback import write_backs_run
from tests.concurrency import race
from tests.factories.atlas import CounterpartyFactory, InvoiceFactory, OrderFactory
from tests.ledger_sync.services.posting_support import (
    built_journal,
    ledger_fixture,  # noqa: F401 - the `ledger` fixture
)

pytestmark = pytest.mark.django_db(transaction=True)

APPROVED_WITHOUT_INVOICE = (201, 202, 204, 205)


def _aware(text: str):
    from datetime import UTC

    return parse_datetime(text).replace(tzinfo=UTC)


def _open_item_lines(total: Decimal, *, payable: bool) -> list[tuple[str, str, Decimal]]:
    """A journal whose one control line is the order's total: on receivables (against
    revenue), or on payables (against expense)."""
    control, other = ("2000", "5001") if payable else ("1200", "4001")
    side, opposite = ("debit", "credit") if total >= 0 else ("credit", "debit")
    return [(side, control, abs(total)), (opposite, other, abs(total))]


def posted_order(
    sandbox, atlas_order_id: int, *, transaction_id: str = "1234", payable: bool = False
) -> OrderSync:
    """A local order mirrored from the sandbox, its journal posted (ledger id given): a
    receivable for the order's total, or a payable."""
    raw = sandbox.app.dataset.orders[atlas_order_id]
    counterparty_raw = sandbox.app.dataset.counterparties[raw["counterpartyId"]]
    from ledger_sync.models import Counterparty

    counterparty = Counterparty.objects.filter(atlas_id=raw["counterpartyId"]).first()
    if counterparty is None:
        counterparty = CounterpartyFactory(
            atlas_id=raw["counterpartyId"], self_billing=counterparty_raw["selfBilling"]
        )
    order = OrderFactory(
        atlas_id=atlas_order_id,
        counterparty=counterparty,
        document_reference=raw["documentReference"],
        registration_date=_aware(raw["registrationDate"]),
        due_date=_aware(raw["dueDate"]),
        total_amount=raw["totalAmount"],
    )
    journal = built_journal(
        order=order,
        state=OrderState.POSTED,
        occurred_on=date(2026, 4, 3),
        lines=_open_item_lines(raw["totalAmount"], payable=payable),
    )
    Journal.objects.filter(pk=journal.pk).update(
        status=Journal.Status.POSTED, ledger_transaction_id=transaction_id
    )
    order_sync = OrderSync.objects.get(pk=journal.order_sync_id)
    write_back_steps_open(order_sync=order_sync)
    return order_sync


@pytest.fixture
def atlas(atlas_sandbox, settings):
    settings.ATLAS_MAX_RETRIES = 0
    return atlas_sandbox


def _client():
    return atlas_client_from_settings(sleep=lambda _s: None)


def test_order_post_carries_exactly_what_the_guide_requires_in_one_batch(atlas):
    syncs = [
        posted_order(atlas, 201, transaction_id="1001"),
        posted_order(atlas, 202, transaction_id="1002"),
    ]

    report = write_backs_run(client=_client())

    (call,) = atlas.app.calls_to("/api/Order/Post")
    assert call.body == {
        "data": [
            {
                "id": 201,
                "erpCode": "ERP-DOC-20260403-1001",
                "registrationDate": atlas.app.dataset.orders[201]["registrationDate"],
                "dueDate": atlas.app.dataset.orders[201]["dueDate"],
                "totalAmount": atlas.app.dataset.orders[201]["totalAmount"],
            },
            {
                "id": 202,
                "erpCode": "ERP-DOC-20260403-1002",
                "registrationDate": atlas.app.dataset.orders[202]["registrationDate"],
                "dueDate": atlas.app.dataset.orders[202]["dueDate"],
                "totalAmount": atlas.app.dataset.orders[202]["totalAmount"],
            },
        ]
    }
    assert atlas.app.dataset.orders[201]["erpCode"] == "ERP-DOC-20260403-1001"
    assert report.erp_codes_written == 2
    for sync in syncs:
        sync.refresh_from_db()
        assert sync.state == OrderState.INVOICED
        assert sync.erp_code.startswith("ERP-DOC-20260403-")


def test_erp_code_pattern_is_configurable(atlas, settings):
    settings.ERP_CODE_PATTERN = "GT-{transaction_id}/{order_id}"
    posted_order(atlas, 201, transaction_id="77")

    write_backs_run(client=_client())

    assert atlas.app.dataset.orders[201]["erpCode"] == "GT-77/201"


def test_invoice_is_looked_up_by_external_id_before_it_is_created(atlas):
    sync = posted_order(atlas, 201)

    report = write_backs_run(client=_client())

    paths = [c.path for c in atlas.app.calls]
    assert paths.index("/api/Invoice/GetByExternalIds") < paths.index("/api/Invoice/Post")
    (post,) = atlas.app.calls_to("/api/Invoice/Post")
    raw = atlas.app.dataset.orders[201]
    assert post.body == {
        "data": [
            {
                "orderId": 201,
                "externalId": "LS-INV-201",
                "invoiceNumber": "INV-2026-0001",
                "amount": abs(raw["totalAmount"]),
                "invoiceDate": raw["registrationDate"],
                "dueDate": raw["dueDate"],
                "isPaid": False,
            }
        ]
    }
    issued = IssuedInvoice.objects.get(order_sync=sync)
    created = [i for i in atlas.app.dataset.invoices.values() if i["externalId"] == "LS-INV-201"]
    assert len(created) == 1 and issued.atlas_invoice_id == created[0]["id"]
    assert report.invoices_created == 1


def test_a_retried_invoice_found_by_external_id_is_not_created_twice(atlas):
    sync = posted_order(atlas, 201)
    write_backs_run(client=_client())
    # The answer of Invoice/Post was lost: we never recorded it.
    WriteBackStep.objects.filter(order_sync=sync, kind=WriteBackStep.Kind.INVOICE).update(
        status=WriteBackStep.Status.FAILED, next_attempt_at=None
    )
    OrderSync.objects.filter(pk=sync.pk).update(state=OrderState.ERP_CODE_WRITTEN)
    IssuedInvoice.objects.filter(order_sync=sync).update(atlas_invoice_id=None)
    atlas.app.reset_calls()

    report = write_backs_run(client=_client())

    assert atlas.app.calls_to("/api/Invoice/Post") == []
    assert report.invoices_found == 1 and report.invoices_created == 0
    assert [i["externalId"] for i in atlas.app.dataset.invoices.values()].count("LS-INV-201") == 1
    sync.refresh_from_db()
    assert sync.state == OrderState.INVOICED
    assert IssuedInvoice.objects.get(order_sync=sync).atlas_invoice_id is not None


def test_an_invoice_atlas_already_holds_for_the_order_is_not_duplicated(atlas):
    sync = posted_order(atlas, 201)
    InvoiceFactory(atlas_id=9999, order=sync.order, order_atlas_id=201, amount=Decimal("1.00"))

    write_backs_run(client=_client())

    assert atlas.app.calls_to("/api/Invoice/Post") == []
    assert not IssuedInvoice.objects.filter(order_sync=sync).exists()  # no number spent
    sync.refresh_from_db()
    assert sync.state == OrderState.INVOICED


def test_a_second_pass_writes_nothing(atlas):
    for order_id in APPROVED_WITHOUT_INVOICE:
        posted_order(atlas, order_id)
    write_backs_run(client=_client())
    atlas.app.reset_calls()

    report = write_backs_run(client=_client())

    assert atlas.app.calls == []
    assert report.erp_codes_written == 0 and report.invoices_created == 0


def test_invoice_numbers_are_gap_free_per_series_and_year(atlas):
    # A payable of a self-billing counterparty gets an SB number; the receivables INV numbers.
    payable = APPROVED_WITHOUT_INVOICE[1]
    syncs = [
        posted_order(atlas, order_id, payable=order_id == payable)
        for order_id in APPROVED_WITHOUT_INVOICE
    ]
    counterparty = syncs[1].order.counterparty
    counterparty.self_billing = True
    counterparty.save()

    write_backs_run(client=_client())

    numbers = {s.order.atlas_id: IssuedInvoice.objects.get(order_sync=s).number for s in syncs}
    self_billed = [payable]
    standard = [o for o in APPROVED_WITHOUT_INVOICE if o != payable]
    assert sorted(numbers[o] for o in self_billed) == [
        f"SB-2026-{n:04d}" for n in range(1, len(self_billed) + 1)
    ]
    assert sorted(numbers[o] for o in standard) == [
        f"INV-2026-{n:04d}" for n in range(1, len(standard) + 1)
    ]
    assert dict(InvoiceNumberSequence.objects.values_list("series", "last_number")) == {
        "standard": len(standard),
        "self_billing": len(self_billed),
    }


def test_a_failed_write_back_is_retried_without_reposting_the_journal(atlas, ledger):
    sync = posted_order(atlas, 201)
    atlas.app.faults = FaultConfig(error_rate=1.0, error_statuses=(500,))

    report = write_backs_run(client=_client())

    step = WriteBackStep.objects.get(order_sync=sync, kind=WriteBackStep.Kind.ERP_CODE)
    assert step.status == WriteBackStep.Status.FAILED and step.attempts == 1
    assert step.next_attempt_at is not None and step.last_error
    assert [p.order_sync_id for p in report.failed] == [sync.pk]
    sync.refresh_from_db()
    assert sync.state == OrderState.POSTED  # the posting stands
    atlas.app.faults = FaultConfig()

    write_back_retry(step=step)
    write_backs_run(client=_client())

    step.refresh_from_db()
    assert step.status == WriteBackStep.Status.DONE
    assert list(ledger.app.calls) == []  # nothing was sent to the AR Ledger again
    assert Journal.objects.get(order_sync=sync).status == Journal.Status.POSTED


def test_with_erp_invoice_numbers_the_invoice_step_waits_for_the_callback(atlas, settings):
    settings.INVOICE_NUMBERS_FROM_ERP = True
    sync = posted_order(atlas, 201)

    report = write_backs_run(client=_client())

    assert report.waiting_for_erp == 1
    assert atlas.app.calls_to("/api/Invoice/Post") == []
    assert not InvoiceNumberSequence.objects.exists()

    issued_invoice_record_from_erp(order_sync=sync, number="ERP-77-2026")
    write_backs_run(client=_client())

    (post,) = atlas.app.calls_to("/api/Invoice/Post")
    assert post.body["data"][0]["invoiceNumber"] == "ERP-77-2026"


@pytest.mark.postgres
def test_invoice_numbers_stay_gap_free_under_concurrent_workers(atlas_sandbox):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent row locks need PostgreSQL")
    syncs = []
    for index in range(40):
        order = OrderFactory(atlas_id=50000 + index)
        syncs.append(OrderSync.objects.create(order=order, state=OrderState.ERP_CODE_WRITTEN))
    # Each worker takes every order, in a different order: every one is raced for.
    chunks = [syncs, syncs[::-1], syncs[10:] + syncs[:10], syncs[25:] + syncs[:25]]

    def issue(index):
        for order_sync in chunks[index]:
            issued_invoices_ensure([order_sync])

    race(len(chunks), issue)  # fails the test when any worker raised
    numbers = sorted(IssuedInvoice.objects.values_list("sequence_number", flat=True))
    assert numbers == list(range(1, 41))
    assert InvoiceNumberSequence.objects.get().last_number == 40


# --- review findings (issue 5 review): lookups that could not be read, lost create answers ----


def test_an_unreadable_invoice_record_with_our_external_id_is_never_created_again(atlas):
    sync = posted_order(atlas, 201)
    # ATLAS holds our invoice, but its record no longer parses (amount emptied by hand).
    broken = {
        "id": 7001,
        "orderId": 201,
        "externalId": "LS-INV-201",
        "invoiceNumber": "INV-2026-0001",
        "amount": None,
        "invoiceDate": "2026-04-01T00:00:00",
        "dueDate": "2026-04-15T00:00:00",
        "isPaid": False,
    }
    atlas.app.dataset.invoices[7001] = broken
    atlas.app._index("invoices", broken)  # as if stored through the API

    report = write_backs_run(client=_client())

    assert atlas.app.calls_to("/api/Invoice/Post") == []
    assert [i["externalId"] for i in atlas.app.dataset.invoices.values()].count("LS-INV-201") == 1
    step = WriteBackStep.objects.get(order_sync=sync, kind=WriteBackStep.Kind.INVOICE)
    assert step.status == WriteBackStep.Status.FAILED
    assert "could not read" in step.last_error and "LS-INV-201" in step.last_error
    assert [p.reason for p in report.failed] == ["write_back_invoice"]
    sync.refresh_from_db()
    assert sync.state == OrderState.ERP_CODE_WRITTEN


def test_an_invoice_create_with_a_lost_answer_is_looked_up_not_resent(atlas):
    from integration.atlas.errors import AtlasServerError

    sync = posted_order(atlas, 201)
    client = _client()
    real_post = client.post_invoices

    def applied_then_lost(records):
        real_post(records)
        error = AtlasServerError("bad gateway", endpoint="/api/Invoice/Post", status=502)
        error.outcome_unknown = True
        raise error

    client.post_invoices = applied_then_lost

    first = write_backs_run(client=client)

    step = WriteBackStep.objects.get(order_sync=sync, kind=WriteBackStep.Kind.INVOICE)
    assert step.status == WriteBackStep.Status.FAILED and len(first.failed) == 1
    number = IssuedInvoice.objects.get(order_sync=sync).number
    write_back_retry(step=step)
    atlas.app.reset_calls()

    second = write_backs_run(client=_client())

    assert atlas.app.calls_to("/api/Invoice/Post") == []
    assert second.invoices_found == 1 and second.invoices_created == 0
    created = [i for i in atlas.app.dataset.invoices.values() if i["externalId"] == "LS-INV-201"]
    assert len(created) == 1 and created[0]["invoiceNumber"] == number
    assert IssuedInvoice.objects.get(order_sync=sync).number == number  # the number is kept
    assert InvoiceNumberSequence.objects.get().last_number == 1  # and no other was taken
    sync.refresh_from_db()
    assert sync.state == OrderState.INVOICED


def test_an_invoice_deleted_in_atlas_does_not_count_as_the_orders_invoice(atlas):
    from ledger_sync.models import SyncState

    sync = posted_order(atlas, 201)
    InvoiceFactory(
        atlas_id=9999,
        order=sync.order,
        order_atlas_id=201,
        amount=Decimal("1.00"),
        sync_state=SyncState.MISSING,  # the mirror saw it disappear from ATLAS
    )

    report = write_backs_run(client=_client())

    (post,) = atlas.app.calls_to("/api/Invoice/Post")
    assert post.body["data"][0]["externalId"] == "LS-INV-201"
    assert report.invoices_created == 1
    sync.refresh_from_db()
    assert sync.state == OrderState.INVOICED
    assert IssuedInvoice.objects.get(order_sync=sync).atlas_invoice_id is not None


def test_no_invoice_is_issued_when_the_order_total_differs_from_the_open_item(atlas):
    sync = posted_order(atlas, 201)
    # ATLAS changed the order after its journal was posted (mirrored since).
    Order.objects.filter(pk=sync.order.pk).update(total_amount=Decimal("1000.00"))

    report = write_backs_run(client=_client())

    assert atlas.app.calls_to("/api/Invoice/Post") == []
    assert not IssuedInvoice.objects.exists()
    step = WriteBackStep.objects.get(order_sync=sync, kind=WriteBackStep.Kind.INVOICE)
    assert step.status == WriteBackStep.Status.FAILED
    assert "1,000.00 EUR" in step.last_error and "835,169.66 EUR" in step.last_error
    assert "reverse the journal" in step.last_error
    assert [p.reason for p in report.failed] == ["write_back_invoice"]
    sync.refresh_from_db()
    assert sync.state == OrderState.ERP_CODE_WRITTEN


def test_a_journal_on_accounts_no_longer_control_accounts_is_not_taken_for_a_net_zero_order(atlas):
    sync = posted_order(atlas, 201)
    # The receivables account was changed since the journal was posted to 1200, and the
    # chart is not mirrored: the journal's control line cannot be told.
    settings_row = PostingSettings.load()
    settings_row.receivables_account = "1210"
    settings_row.save()

    write_backs_run(client=_client())

    step = WriteBackStep.objects.get(order_sync=sync, kind=WriteBackStep.Kind.INVOICE)
    assert step.status == WriteBackStep.Status.FAILED
    assert "leaves 0.00 EUR open" in step.last_error
    sync.refresh_from_db()
    assert sync.state == OrderState.ERP_CODE_WRITTEN  # not "paid" for want of a control line
