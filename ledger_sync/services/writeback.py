"""Write-backs to ATLAS after a journal is posted: the ERP document code, then the invoice.

Each is a WriteBackStep with its own state and retry. A failed write-back is retried on its own
and never re-posts the journal. Re-running writes nothing twice:
- the ERP code is an upsert of the order keyed by its ATLAS id (Order/Post needs
  registrationDate, dueDate and totalAmount even on update, so they are always sent);
- an invoice's number and externalId are allocated and stored (IssuedInvoice) before the
  remote call and reused on every retry; before creating, ATLAS is asked for the externalId
  (and, for retries, for the order's invoices); one found is recorded, never created again.
Calls are batched: one Order/Post, one Invoice/GetByExternalIds and one Invoice/Post per
ATLAS_BATCH_SIZE orders (the client chunks).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from integration import wire
from integration.atlas.client import AtlasClient
from integration.atlas.errors import AtlasError
from integration.atlas.records import ReadResult, RecordError
from ledger_sync.models import (
    Invoice,
    InvoiceNumberSequence,
    IssuedInvoice,
    Journal,
    OrderState,
    OrderSync,
    SyncState,
    WriteBackStep,
)
from ledger_sync.services.background import backoff_delay
from ledger_sync.services.claims import orders_claim, orders_release, worker_id_new
from ledger_sync.services.db import rows_update
from ledger_sync.services.order_states import WRITE_BACK_STATES, OrderProblem, TransitionBatch
from ledger_sync.services.remote import atlas_client_from_settings

logger = logging.getLogger(__name__)

WAITING_FOR_ERP_INVOICE = "erp_invoice_callback"
ACTOR = "system:write_back"


@dataclass
class WriteBackReport:
    erp_codes_written: int = 0
    invoices_created: int = 0
    invoices_found: int = 0
    waiting_for_erp: int = 0
    failed: list[OrderProblem] = field(default_factory=list)
    atlas_calls: int = 0


# --- steps ---------------------------------------------------------------------------------------


def write_back_steps_open(*, order_sync: OrderSync) -> None:
    """Called when a journal is posted: the ERP code step is (re)opened for this revision, the
    invoice step is opened once per order (a re-posted revision keeps its invoice)."""
    WriteBackStep.objects.update_or_create(
        order_sync=order_sync,
        kind=WriteBackStep.Kind.ERP_CODE,
        defaults={
            "status": WriteBackStep.Status.PENDING,
            "attempts": 0,
            "next_attempt_at": None,
            "last_error": "",
        },
    )
    WriteBackStep.objects.get_or_create(
        order_sync=order_sync,
        kind=WriteBackStep.Kind.INVOICE,
        defaults={
            "status": WriteBackStep.Status.PENDING,
            "waiting_for": WAITING_FOR_ERP_INVOICE if settings.INVOICE_NUMBERS_FROM_ERP else "",
        },
    )


def write_back_steps_open_many(*, order_sync_ids: list[int]) -> None:
    """write_back_steps_open for a batch of orders, in a few queries."""
    if not order_sync_ids:
        return
    existing = set(
        WriteBackStep.objects.filter(order_sync_id__in=order_sync_ids).values_list(
            "order_sync_id", "kind"
        )
    )
    WriteBackStep.objects.filter(
        order_sync_id__in=order_sync_ids, kind=WriteBackStep.Kind.ERP_CODE
    ).update(
        status=WriteBackStep.Status.PENDING,
        attempts=0,
        next_attempt_at=None,
        last_error="",
        updated_at=timezone.now(),
    )
    waiting = WAITING_FOR_ERP_INVOICE if settings.INVOICE_NUMBERS_FROM_ERP else ""
    WriteBackStep.objects.bulk_create(
        [
            WriteBackStep(
                order_sync_id=pk, kind=kind, waiting_for=waiting if kind == "invoice" else ""
            )
            for pk in order_sync_ids
            for kind in (WriteBackStep.Kind.ERP_CODE, WriteBackStep.Kind.INVOICE)
            if (pk, kind) not in existing
        ],
        batch_size=500,
    )


def write_back_retry(*, step: WriteBackStep) -> WriteBackStep:
    """A person asks for a failed step to be tried at the next pass (backoff skipped)."""
    WriteBackStep.objects.filter(pk=step.pk, status=WriteBackStep.Status.FAILED).update(
        next_attempt_at=None
    )
    step.refresh_from_db()
    return step


def _due_steps(kind: str, *, states: Iterable[str], now: datetime, ids: Iterable[int] | None):
    steps = (
        WriteBackStep.objects.filter(
            kind=kind,
            status__in=(WriteBackStep.Status.PENDING, WriteBackStep.Status.FAILED),
            waiting_for="",
            order_sync__state__in=list(states),
        )
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .select_related("order_sync__order__counterparty")
        .order_by("pk")
    )
    if ids is not None:
        steps = steps.filter(order_sync_id__in=list(ids))
    return list(steps)


def write_backs_run(
    *,
    client: AtlasClient | None = None,
    order_sync_ids: Iterable[int] | None = None,
    now: datetime | None = None,
    batch_size: int | None = None,
) -> WriteBackReport:
    """Do every due write-back step: ERP codes first, then invoices, in batches of orders.

    Each batch of orders is claimed (like posting) so that two workers never write back the
    same order at once: the externalId lookup before creating an invoice is only a guarantee
    when nobody else creates it in between.
    """
    if client is None:
        client = atlas_client_from_settings()
    report = WriteBackReport()
    calls_before = client.stats.requests
    now = now or timezone.now()
    batch_size = batch_size or settings.ATLAS_BATCH_SIZE
    due = (
        WriteBackStep.objects.filter(
            status__in=(WriteBackStep.Status.PENDING, WriteBackStep.Status.FAILED),
            waiting_for="",
            order_sync__state__in=WRITE_BACK_STATES,
        )
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .order_by("order_sync_id")
    )
    if order_sync_ids is not None:
        due = due.filter(order_sync_id__in=list(order_sync_ids))
    pending_ids = list(dict.fromkeys(due.values_list("order_sync_id", flat=True)))
    worker_id = worker_id_new()
    for start in range(0, len(pending_ids), batch_size):
        chunk = pending_ids[start : start + batch_size]
        claimed = [
            o.pk
            for o in orders_claim(
                states=WRITE_BACK_STATES, limit=len(chunk), worker_id=worker_id, ids=chunk, now=now
            )
        ]
        if not claimed:
            continue
        try:
            erp_steps = _due_steps(
                WriteBackStep.Kind.ERP_CODE, states=WRITE_BACK_STATES, now=now, ids=claimed
            )
            if erp_steps:
                _erp_codes_write(erp_steps, client=client, report=report)
            invoice_steps = _due_steps(
                WriteBackStep.Kind.INVOICE,
                states=(OrderState.ERP_CODE_WRITTEN,),
                now=now,
                ids=claimed,
            )
            if invoice_steps:
                _invoices_write(invoice_steps, client=client, report=report)
            _invoiced_earlier_revisions_close(claimed)
        finally:
            orders_release(order_sync_ids=claimed, worker_id=worker_id)
    report.waiting_for_erp = WriteBackStep.objects.filter(
        kind=WriteBackStep.Kind.INVOICE,
        status=WriteBackStep.Status.PENDING,
        waiting_for=WAITING_FOR_ERP_INVOICE,
    ).count()
    report.atlas_calls = client.stats.requests - calls_before
    return report


def _invoiced_earlier_revisions_close(order_sync_ids: list[int]) -> None:
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
    transitions = TransitionBatch()
    with transaction.atomic():
        transitions.add_many(
            [_Moved(o, "invoice already issued in ATLAS for an earlier revision") for o in orders],
            OrderState.INVOICED,
            note=lambda m: m.note,
        )
        transitions.save()


# --- ERP document code ----------------------------------------------------------------------------


def erp_code_for(journal: Journal) -> str:
    """The ERP document code of a posted journal, from ERP_CODE_PATTERN."""
    order_sync = journal.order_sync
    return settings.ERP_CODE_PATTERN.format(
        transaction_id=journal.ledger_transaction_id,
        date=journal.occurred_on,
        order_id=order_sync.order.atlas_id,
        revision=journal.revision,
    )[:64]


def order_post_record(order_sync: OrderSync, erp_code: str) -> dict[str, Any]:
    """The Order/Post record: ATLAS wants registrationDate, dueDate and totalAmount even when
    only erpCode changes, so they are sent as mirrored."""
    order = order_sync.order
    return {
        "id": order.atlas_id,
        "erpCode": erp_code,
        "registrationDate": order.registration_date,
        "dueDate": order.due_date,
        "totalAmount": order.total_amount,
    }


def _erp_codes_write(steps: list[WriteBackStep], *, client: AtlasClient, report: WriteBackReport):
    journals = {
        j.order_sync_id: j
        for j in Journal.objects.filter(
            order_sync_id__in=[s.order_sync_id for s in steps],
            kind=Journal.Kind.POSTING,
            status=Journal.Status.POSTED,
        ).order_by("order_sync_id", "revision")
    }
    records = []
    ready = []
    for step in steps:
        journal = journals.get(step.order_sync_id)
        if journal is None:
            continue
        journal.order_sync = step.order_sync
        code = erp_code_for(journal)
        records.append(order_post_record(step.order_sync, code))
        ready.append((step, code))
    if not ready:
        return
    try:
        result = client.post_orders(records)
    except AtlasError as error:
        _steps_failed([s for s, _ in ready], error=str(error), records=records, report=report)
        return
    saved = result.by_id
    done, missing = [], []
    for (step, code), record in zip(ready, records, strict=True):
        answer = saved.get(record["id"])
        if answer is not None and (answer.erp_code or "") == code:
            done.append((step, code, record, answer.raw))
        else:
            missing.append((step, record))
    now = timezone.now()
    moved = []
    for step, code, record, raw in done:
        step.status = WriteBackStep.Status.DONE
        step.attempts += 1
        step.last_error = ""
        step.next_attempt_at = None
        step.request_json = wire.dumps(record, indent=2)
        step.response_json = wire.dumps(raw, indent=2)
        step.done_at = now
        step.updated_at = now
        step.order_sync.erp_code = code
        if step.order_sync.state == OrderState.POSTED:
            moved.append(
                _Moved(
                    step.order_sync,
                    f"ERP document code {code} written to ATLAS order "
                    f"{step.order_sync.order.atlas_id}",
                )
            )
    transitions = TransitionBatch()
    with transaction.atomic():
        rows_update(WriteBackStep, [s for s, *_ in done], _STEP_FIELDS)
        rows_update(OrderSync, [s.order_sync for s, *_ in done], ["erp_code"])
        transitions.add_many(moved, OrderState.ERP_CODE_WRITTEN, note=lambda m: m.note)
        transitions.save()
    report.erp_codes_written += len(done)
    if missing:
        _steps_failed(
            [s for s, _ in missing],
            error="ATLAS answered without confirming the ERP document code of this order",
            records=[r for _, r in missing],
            report=report,
        )


# --- invoices -------------------------------------------------------------------------------------


def invoice_series_for(order_sync: OrderSync) -> str:
    counterparty = order_sync.order.counterparty
    if counterparty is not None and counterparty.self_billing:
        return InvoiceNumberSequence.Series.SELF_BILLING
    return InvoiceNumberSequence.Series.STANDARD


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


def issued_invoices_ensure(order_syncs: list[OrderSync]) -> dict[int, IssuedInvoice]:
    """The IssuedInvoice of each order, allocating numbers for those that have none yet."""
    existing = {
        inv.order_sync_id: inv for inv in IssuedInvoice.objects.filter(order_sync__in=order_syncs)
    }
    missing = [o for o in order_syncs if o.pk not in existing]
    if not missing:
        return existing
    try:
        with transaction.atomic():
            existing.update(_issue(missing))
    except IntegrityError:
        # Another worker issued one of them meanwhile (unique order_sync): the rolled back
        # transaction returned our numbers; take the rest one by one.
        for order_sync in missing:
            try:
                with transaction.atomic():
                    existing.update(_issue([order_sync]))
            except IntegrityError:
                existing[order_sync.pk] = IssuedInvoice.objects.get(order_sync=order_sync)
    return existing


def _issue(order_syncs: list[OrderSync]) -> dict[int, IssuedInvoice]:
    groups: dict[tuple[str, int], list[OrderSync]] = defaultdict(list)
    for order_sync in order_syncs:
        invoice_date = _to_date(order_sync.order.registration_date)
        groups[(invoice_series_for(order_sync), invoice_date.year)].append(order_sync)
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


def _invoices_write(steps: list[WriteBackStep], *, client: AtlasClient, report: WriteBackReport):
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
    if not remaining:
        _invoices_record(done, client_records={}, report=report)
        return
    unreadable: list[tuple[WriteBackStep, str]] = []
    try:
        issued = issued_invoices_ensure([s.order_sync for s in remaining])
        lookup = client.get_invoices_by_external_ids(
            [issued[s.order_sync_id].external_id for s in remaining]
        )
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
            _steps_failed([step], error=message, records=[], report=report)
            recorded.add(id(step))
        _steps_failed(
            [s for s in remaining if id(s) not in recorded],
            error=str(error),
            records=[],
            report=report,
        )
        return
    for step, message in unreadable:
        _steps_failed([step], error=message, records=[], report=report)
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
        _steps_failed(
            [s for s, _ in unconfirmed],
            error="ATLAS answered without the created invoice; it is looked up before retrying",
            records=[r for _, r in unconfirmed],
            report=report,
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
            moved.append(_Moved(step.order_sync, f"Invoice {note}"))
    invoices = list(IssuedInvoice.objects.filter(order_sync_id__in=list(atlas_ids)))
    for invoice in invoices:
        invoice.atlas_invoice_id = atlas_ids[invoice.order_sync_id]
    transitions = TransitionBatch()
    with transaction.atomic():
        rows_update(IssuedInvoice, invoices, ["atlas_invoice_id"])
        rows_update(WriteBackStep, [s for s, *_ in done], _STEP_FIELDS)
        transitions.add_many(moved, OrderState.INVOICED, note=lambda m: m.note)
        transitions.save()


_STEP_FIELDS = [
    "status",
    "attempts",
    "last_error",
    "next_attempt_at",
    "request_json",
    "response_json",
    "done_at",
    "updated_at",
]


@dataclass
class _Moved:
    """An order moved by a write-back, in the shape TransitionBatch.add_many takes."""

    order_sync: OrderSync
    note: str
    actor: str = ACTOR
    user: Any = None


def _steps_failed(steps, *, error: str, records, report: WriteBackReport) -> None:
    now = timezone.now()
    with transaction.atomic():
        for index, step in enumerate(steps):
            step.status = WriteBackStep.Status.FAILED
            step.attempts += 1
            step.last_error = error
            step.next_attempt_at = now + backoff_delay(step.attempts)
            if index < len(records):
                step.request_json = wire.dumps(records[index], indent=2)
            step.save()
            report.failed.append(
                OrderProblem(
                    order_sync_id=step.order_sync_id,
                    atlas_order_id=step.order_sync.order.atlas_id,
                    state=step.order_sync.state,
                    reason=f"write_back_{step.kind}",
                    message=error,
                )
            )
    logger.warning("write_back.failed", extra={"steps": len(steps), "error": error[:200]})


def _to_date(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


def _midnight(value: date) -> datetime:
    return datetime(value.year, value.month, value.day)
