"""The invoice write-back: which document an order gets (by direction: ours, self-billing, the
ERP's, none), its number and externalId allocated and stored before the remote call, then
Invoice/Post — looked up by externalId first, so one found is recorded, never created again."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from integration import wire
from integration.atlas.client import AtlasClient
from integration.atlas.errors import AtlasError
from integration.atlas.records import ReadResult, RecordError
from ledger_sync.models import (
    Invoice,
    InvoiceNumberSequence,
    IssuedInvoice,
    OrderState,
    OrderSync,
    OrderTransition,
    SyncState,
    WriteBackStep,
)
from ledger_sync.services.db import rows_update
from ledger_sync.services.documents import OpenItem, OrderDocument, order_open_items
from ledger_sync.services.order_states import (
    TransitionBatch,
    order_transitions_record,
)
from ledger_sync.services.write_back_steps import (
    ACTOR,
    STEP_FIELDS,
    WAITING_FOR_ERP_INVOICE,
    OrderMove,
    WriteBackReport,
    steps_failed,
)

logger = logging.getLogger(__name__)


def invoiced_earlier_revisions_close(order_sync_ids: list[int]) -> None:
    """A revision re-posted after a reversal gets a new erpCode, but the order's invoice was
    issued with the first revision: move those orders on to INVOICED without a new invoice."""
    orders = list(
        OrderSync.objects.filter(
            pk__in=order_sync_ids,
            state=OrderState.ERP_CODE_WRITTEN,
            write_backs__kind=WriteBackStep.Kind.INVOICE,
            write_backs__status=WriteBackStep.Status.DONE,
        )
    )
    if not orders:
        return
    open_items = order_open_items(orders)
    issued = {i.order_sync_id: i for i in IssuedInvoice.objects.filter(order_sync__in=orders)}
    moved = []
    for order_sync in orders:
        note = "invoice already issued in ATLAS for an earlier revision"
        invoice, open_item = issued.get(order_sync.pk), open_items.get(order_sync.pk)
        if invoice is not None and open_item is not None and invoice.amount != open_item.amount:
            # No credit note or corrected invoice is issued automatically: a person must.
            note += (
                f"; {invoice.number} states {invoice.amount:,.2f} {invoice.currency} but "
                f"{open_item.journal_reference} leaves {open_item.amount:,.2f} "
                f"{order_sync.order.currency} open: correct the invoice in ATLAS (a credit note "
                "or a corrected invoice)"
            )
        moved.append(OrderMove(order_sync, note))
    transitions = TransitionBatch()
    with transaction.atomic():
        transitions.add_many(moved, OrderState.INVOICED, note=lambda m: m.note)
        transitions.save()


def invoice_series_for(order_sync: OrderSync, *, document: OrderDocument | None = None) -> str:
    """The series of the invoice we issue: SB for a self-billing invoice (a payable of a
    self-billing counterparty), INV for our invoice of a receivable. `document` is the
    order's document by the rule (services/documents.py); without it, the order's posted
    journal is read."""
    if document is None:
        open_item = order_open_items([order_sync]).get(order_sync.pk)
        document = open_item.document if open_item is not None else OrderDocument.OUR_INVOICE
    if document is OrderDocument.SELF_BILLING:
        return InvoiceNumberSequence.Series.SELF_BILLING
    if document is OrderDocument.OUR_INVOICE:
        return InvoiceNumberSequence.Series.STANDARD
    raise ValueError(
        f"order {order_sync.order.atlas_id}: no invoice of ours is issued for document {document}"
    )


def invoice_number_format(*, series: str, year: int, number: int) -> str:
    prefix = (
        settings.INVOICE_PREFIX_SELF_BILLING
        if series == InvoiceNumberSequence.Series.SELF_BILLING
        else settings.INVOICE_PREFIX_STANDARD
    )
    return settings.INVOICE_NUMBER_PATTERN.format(prefix=prefix, year=year, number=number)


def invoice_external_id_for(order_sync: OrderSync) -> str:
    return settings.INVOICE_EXTERNAL_ID_PATTERN.format(order_id=order_sync.order.atlas_id)


def invoice_numbers_allocate(*, series: str, year: int, count: int) -> list[int]:
    """Take the next `count` numbers of a series' year. MUST run inside the transaction that
    stores the invoices using them: the sequence row stays locked until that commits, and a
    rollback gives the numbers back, so the series has no gaps and no duplicates."""
    if count < 1:
        return []
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("invoice numbers are allocated inside the transaction that uses them")
    InvoiceNumberSequence.objects.get_or_create(series=series, year=year)
    # The UPDATE takes the row lock (PostgreSQL) / the write lock (SQLite) until commit; two
    # workers therefore take consecutive, disjoint ranges.
    InvoiceNumberSequence.objects.filter(series=series, year=year).update(
        last_number=F("last_number") + count, updated_at=timezone.now()
    )
    last = InvoiceNumberSequence.objects.get(series=series, year=year).last_number
    return list(range(last - count + 1, last + 1))


def issued_invoices_ensure(
    order_syncs: list[OrderSync], *, documents: Mapping[int, OrderDocument] | None = None
) -> dict[int, IssuedInvoice]:
    """The IssuedInvoice of each order, allocating numbers for those that have none yet
    (series by `documents`, the document rule by OrderSync pk; read when not given)."""
    existing = {
        inv.order_sync_id: inv for inv in IssuedInvoice.objects.filter(order_sync__in=order_syncs)
    }
    missing = [o for o in order_syncs if o.pk not in existing]
    if not missing:
        return existing
    if documents is None:
        documents = {pk: item.document for pk, item in order_open_items(missing).items()}
    try:
        with transaction.atomic():
            existing.update(_issue(missing, documents=documents))
    except IntegrityError:
        # Another worker issued one of them meanwhile (unique order_sync): the rolled back
        # transaction returned our numbers; take the rest one by one.
        for order_sync in missing:
            try:
                with transaction.atomic():
                    existing.update(_issue([order_sync], documents=documents))
            except IntegrityError:
                existing[order_sync.pk] = IssuedInvoice.objects.get(order_sync=order_sync)
    return existing


def _issue(
    order_syncs: list[OrderSync], *, documents: Mapping[int, OrderDocument]
) -> dict[int, IssuedInvoice]:
    groups: dict[tuple[str, int], list[OrderSync]] = defaultdict(list)
    for order_sync in order_syncs:
        invoice_date = _to_date(order_sync.order.registration_date)
        # An order without a posted journal to read keeps the old default: our invoice.
        document = documents.get(order_sync.pk, OrderDocument.OUR_INVOICE)
        series = invoice_series_for(order_sync, document=document)
        groups[(series, invoice_date.year)].append(order_sync)
    rows = []
    for (series, year), members in sorted(groups.items()):
        numbers = invoice_numbers_allocate(series=series, year=year, count=len(members))
        for order_sync, number in zip(members, numbers, strict=True):
            order = order_sync.order
            rows.append(
                IssuedInvoice(
                    order_sync=order_sync,
                    number=invoice_number_format(series=series, year=year, number=number),
                    series=series,
                    year=year,
                    sequence_number=number,
                    external_id=invoice_external_id_for(order_sync),
                    amount=abs(order.total_amount),
                    currency=order.currency,
                    invoice_date=_to_date(order.registration_date),
                    due_date=_to_date(order.due_date),
                    source=IssuedInvoice.Source.SEQUENCE,
                )
            )
    IssuedInvoice.objects.bulk_create(rows)
    return {row.order_sync_id: row for row in rows}


@transaction.atomic
def issued_invoice_record_from_erp(
    *, order_sync: OrderSync, number: str, external_id: str | None = None
) -> IssuedInvoice:
    """INVOICE_NUMBERS_FROM_ERP: the ERP's invoice callback supplies the number; the invoice
    step stops waiting and the next pass creates the invoice in ATLAS."""
    order = order_sync.order
    invoice, _ = IssuedInvoice.objects.get_or_create(
        order_sync=order_sync,
        defaults={
            "number": number,
            "external_id": external_id or invoice_external_id_for(order_sync),
            "amount": abs(order.total_amount),
            "currency": order.currency,
            "invoice_date": _to_date(order.registration_date),
            "due_date": _to_date(order.due_date),
            "source": IssuedInvoice.Source.ERP_CALLBACK,
        },
    )
    WriteBackStep.objects.filter(
        order_sync=order_sync, kind=WriteBackStep.Kind.INVOICE, waiting_for__gt=""
    ).update(waiting_for="", next_attempt_at=None)
    return invoice


def invoice_post_record(invoice: IssuedInvoice, *, atlas_order_id: int) -> dict[str, Any]:
    return {
        "orderId": atlas_order_id,
        "externalId": invoice.external_id,
        "invoiceNumber": invoice.number,
        "amount": invoice.amount,
        "invoiceDate": _midnight(invoice.invoice_date),
        "dueDate": _midnight(invoice.due_date),
        "isPaid": False,
    }


def invoices_write(steps: list[WriteBackStep], *, client: AtlasClient, report: WriteBackReport):
    order_syncs = [s.order_sync for s in steps]
    # By order, first: an invoice ATLAS already holds for the order (created by hand or by an
    # earlier run, as mirrored) is recorded, never duplicated.
    mirrored = defaultdict(list)
    # An invoice the mirror saw disappear from ATLAS (MISSING) is not one ATLAS holds.
    for invoice in (
        Invoice.objects.filter(order_atlas_id__in=[o.order.atlas_id for o in order_syncs])
        .exclude(sync_state=SyncState.MISSING)
        .order_by("atlas_id")
    ):
        mirrored[invoice.order_atlas_id].append(invoice)
    done: list[tuple[WriteBackStep, Any, str]] = []  # (step, ATLAS invoice or raw, note)
    remaining = []
    for step in steps:
        found = mirrored.get(step.order_sync.order.atlas_id)
        if found:
            done.append((step, found[0].raw, f"ATLAS already holds invoice {found[0].atlas_id}"))
        else:
            remaining.append(step)
    remaining, documents = _documents_route(remaining, report=report)
    if not remaining:
        _invoices_record(done, client_records={}, report=report)
        return
    unreadable: list[tuple[WriteBackStep, str]] = []
    try:
        issued = issued_invoices_ensure([s.order_sync for s in remaining], documents=documents)
        lookup = client.get_invoices_by_external_ids(
            [issued[s.order_sync_id].external_id for s in remaining]
        )
        # done and unreadable grow as each step is sorted: on an AtlasError midway, what
        # was sorted before it is still recorded below.
        to_create = _steps_to_create(
            remaining, issued=issued, lookup=lookup, client=client, done=done, unreadable=unreadable
        )
        records = [
            invoice_post_record(issued[s.order_sync_id], atlas_order_id=s.order_sync.order.atlas_id)
            for s in to_create
        ]
        created = {}
        if records:
            created = {inv.external_id: inv.raw for inv in client.post_invoices(records).records}
    except AtlasError as error:
        # What was found before the failure is recorded; the rest is retried (and looked up
        # by externalId first, so a create that landed before the error is not repeated).
        _invoices_record(done, client_records={}, report=report)
        recorded = {id(step) for step, _, _ in done}
        for step, message in unreadable:
            steps_failed([step], error=message, records=[], report=report)
            recorded.add(id(step))
        steps_failed(
            [s for s in remaining if id(s) not in recorded],
            error=str(error),
            records=[],
            report=report,
        )
        return
    for step, message in unreadable:
        steps_failed([step], error=message, records=[], report=report)
    unconfirmed = []
    for step, record in zip(to_create, records, strict=True):
        raw = created.get(record["externalId"])
        if raw is None:
            unconfirmed.append((step, record))
        else:
            done.append((step, raw, "created in ATLAS"))
            report.invoices_created += 1
            step.request_json = wire.dumps(record, indent=2)
    report.invoices_found += sum(1 for _, _, note in done if note != "created in ATLAS")
    _invoices_record(done, client_records=created, report=report)
    if unconfirmed:
        steps_failed(
            [s for s, _ in unconfirmed],
            error="ATLAS answered without the created invoice; it is looked up before retrying",
            records=[r for _, r in unconfirmed],
            report=report,
        )


def _steps_to_create(
    remaining: list[WriteBackStep],
    *,
    issued: dict[int, IssuedInvoice],
    lookup: Any,
    client: AtlasClient,
    done: list[tuple[WriteBackStep, Any, str]],
    unreadable: list[tuple[WriteBackStep, str]],
) -> list[WriteBackStep]:
    """The steps whose invoice ATLAS does not hold; the ones it holds go to done, the ones
    whose lookup returned an unreadable record to unreadable."""
    by_external = {inv.external_id: inv for inv in lookup.records}
    to_create = []
    for step in remaining:
        invoice = issued[step.order_sync_id]
        atlas_invoice = by_external.get(invoice.external_id)
        unread = None if atlas_invoice else _unreadable_invoice(lookup, invoice.external_id)
        if atlas_invoice is None and unread is None and step.attempts > 0:
            # A retry: a create whose answer was lost may have landed under the order.
            by_order = client.get_invoices_by_order_id(step.order_sync.order.atlas_id)
            atlas_invoice = next(
                (i for i in by_order.records if i.external_id == invoice.external_id), None
            )
            if atlas_invoice is None:
                unread = _unreadable_invoice(by_order, invoice.external_id)
        if atlas_invoice is not None:
            done.append((step, atlas_invoice.raw, f"found in ATLAS as {atlas_invoice.id}"))
        elif unread is not None:
            # "Not found" is only an answer when every record ATLAS returned was read: an
            # unreadable one may be this very invoice, and creating it again would
            # duplicate it. A person fixes the record in ATLAS; the step is retried.
            unreadable.append(
                (
                    step,
                    f"ATLAS returned an invoice record it could not read ({unread}); it may "
                    f"be invoice {invoice.external_id}, so none is created until the record "
                    "is corrected in ATLAS",
                )
            )
        else:
            to_create.append(step)
    return to_create


def _documents_route(
    steps: list[WriteBackStep], *, report: WriteBackReport
) -> tuple[list[WriteBackStep], dict[int, OrderDocument]]:
    """Apply the document rule (services/documents.py) to invoice steps ATLAS holds no invoice
    for; return the steps whose invoice is written now and each order's document.

    - an invoice already issued for the order (our number, or the ERP's through
      POST /api/invoices/) is written whatever the rule says;
    - our invoice (INV) or self-billing invoice (SB): issued and written now;
    - a payable of a supplier that does not self-bill: we issue nothing; the step waits for
      the supplier's invoice from the ERP (the order stays at erp_code_written, which the
      order page and its history say), and POST /api/invoices/ releases it;
    - an order netting to 0.00: no document; the step is closed and the order, with nothing
      left to invoice or pay, moves to paid, its history saying why.
    """
    if not steps:
        return steps, {}
    pks = [s.order_sync_id for s in steps]
    already = set(
        IssuedInvoice.objects.filter(order_sync_id__in=pks).values_list("order_sync_id", flat=True)
    )
    open_items = order_open_items([s.order_sync for s in steps if s.order_sync_id not in already])
    documents = {pk: item.document for pk, item in open_items.items()}
    write_now: list[WriteBackStep] = []
    waiting: list[tuple[WriteBackStep, OpenItem]] = []
    nothing: list[tuple[WriteBackStep, OpenItem]] = []
    for step in steps:
        open_item = open_items.get(step.order_sync_id)
        if step.order_sync_id in already or open_item is None:
            write_now.append(step)
            continue
        disagreement = _open_item_disagreement(step.order_sync, open_item)
        if disagreement:
            steps_failed([step], error=disagreement, records=[], report=report)
        elif open_item.document is OrderDocument.AWAIT_ERP:
            waiting.append((step, open_item))
        elif open_item.document is OrderDocument.NONE:
            nothing.append((step, open_item))
        else:
            write_now.append(step)
    if waiting or nothing:
        _documents_hold(waiting, nothing, report=report)
    return write_now, documents


def _open_item_disagreement(order_sync: OrderSync, open_item: OpenItem) -> str:
    """Why no document may be decided for the order yet ("" when one may): the document is for
    the order's totalAmount, and must be the open item the journal left in the ledger. They
    differ when the order changed in ATLAS after posting — or when the journal's control line
    is on an account that is no longer, or not yet, a receivables/payables account, in which
    case the order would wrongly look as if it netted to zero."""
    order = order_sync.order
    expected = abs(order.total_amount)
    if open_item.amount == expected:
        return ""
    found = f"{open_item.amount:,.2f} {order.currency}"
    return (
        f"Order {order.atlas_id}'s totalAmount is {expected:,.2f} {order.currency} but its "
        f"journal {open_item.journal_reference} leaves {found} open on the receivables and "
        "payables accounts, so no invoice is issued. If the order changed in ATLAS after "
        "posting, reverse the journal (it is re-posted with the new figures); otherwise check "
        "that the posting settings' receivables and payables accounts are those the journal "
        "was posted to (or are designated receivable/payable in the chart), then retry."
    )


def _documents_hold(
    waiting: list[tuple[WriteBackStep, OpenItem]],
    nothing: list[tuple[WriteBackStep, OpenItem]],
    *,
    report: WriteBackReport,
) -> None:
    now = timezone.now()
    notes = []
    for step, open_item in waiting:
        step.waiting_for = WAITING_FOR_ERP_INVOICE
        step.next_attempt_at = None
        step.updated_at = now
        order_sync = step.order_sync
        notes.append(
            OrderTransition(
                order_sync=order_sync,
                from_state=order_sync.state,
                to_state=order_sync.state,
                actor=ACTOR,
                note=(
                    f"Document: none from us. {open_item.journal_reference} leaves a payable of "
                    f"{open_item.amount:,.2f} {order_sync.order.currency} to a supplier that "
                    "does not self-bill: waiting for the supplier's invoice from the ERP "
                    "(POST /api/invoices/), which is then written to ATLAS."
                ),
                at=now,
            )
        )
    moved = []
    for step, open_item in nothing:
        step.status = WriteBackStep.Status.DONE
        step.attempts += 1
        step.last_error = ""
        step.next_attempt_at = None
        step.done_at = now
        step.updated_at = now
        moved.append(
            OrderMove(
                step.order_sync,
                f"No document: {open_item.journal_reference} nets the order to 0.00 "
                f"{step.order_sync.order.currency} (what it receives and what it pays offset), "
                "so nothing is invoiced and nothing is left to pay.",
            )
        )
    transitions = TransitionBatch()
    with transaction.atomic():
        rows_update(
            WriteBackStep, [s for s, _ in waiting], ["waiting_for", "next_attempt_at", "updated_at"]
        )
        rows_update(WriteBackStep, [s for s, _ in nothing], STEP_FIELDS)
        order_transitions_record(notes)
        transitions.add_many(moved, OrderState.PAID, note=lambda m: m.note)
        transitions.save()
    report.no_document += len(nothing)
    logger.info(
        "write_back.documents_held",
        extra={"waiting_for_erp_invoice": len(waiting), "no_document": len(nothing)},
    )


def _unreadable_invoice(result: ReadResult[Any], external_id: str) -> RecordError | None:
    """A record of `result` that could not be parsed and may be the invoice `external_id`
    (its raw externalId is that one, or cannot be told)."""
    for error in result.errors:
        raw = error.raw if isinstance(error.raw, Mapping) else {}
        found = raw.get("externalId")
        if found is None or str(found) == external_id:
            return error
    return None


def _invoices_record(done, *, client_records, report: WriteBackReport) -> None:
    if not done:
        return
    now = timezone.now()
    atlas_ids = {}
    moved = []
    for step, raw, note in done:
        atlas_id = raw.get("id") if isinstance(raw, dict) else None
        if atlas_id is not None:
            atlas_ids[step.order_sync_id] = atlas_id
        step.status = WriteBackStep.Status.DONE
        step.attempts += 1
        step.last_error = ""
        step.next_attempt_at = None
        step.response_json = wire.dumps(raw, indent=2)
        step.done_at = now
        step.updated_at = now
        if step.order_sync.state == OrderState.ERP_CODE_WRITTEN:
            moved.append(OrderMove(step.order_sync, f"Invoice {note}"))
    invoices = list(IssuedInvoice.objects.filter(order_sync_id__in=list(atlas_ids)))
    for invoice in invoices:
        invoice.atlas_invoice_id = atlas_ids[invoice.order_sync_id]
    transitions = TransitionBatch()
    with transaction.atomic():
        rows_update(IssuedInvoice, invoices, ["atlas_invoice_id"])
        rows_update(WriteBackStep, [s for s, *_ in done], STEP_FIELDS)
        transitions.add_many(moved, OrderState.INVOICED, note=lambda m: m.note)
        transitions.save()


def _to_date(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


def _midnight(value: date) -> datetime:
    return datetime(value.year, value.month, value.day)
