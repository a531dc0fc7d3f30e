"""Invoices the ERP issued for an order (POST /api/invoices/): accepted (idempotent by
externalId, refused with the field and the fix otherwise), then delivered to ATLAS as the
order's invoice write-back, retried with backoff."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from integration import wire
from ledger_sync.models import (
    Invoice,
    InvoiceReport,
    IssuedInvoice,
    Journal,
    Order,
    OrderSync,
    SyncState,
    WriteBackStep,
)
from ledger_sync.models.inbound import CallbackState
from ledger_sync.services.background import backoff_delay, task_queuer
from ledger_sync.services.callbacks import (
    CallbackRejected,
    atlas_client_or_default,
    callback_fingerprint,
    callback_retry,
    callbacks_due,
    money_check,
    money_text,
    repeat_of,
)
from ledger_sync.services.claims import row_claim
from ledger_sync.services.documents import OrderDocument, order_open_items
from ledger_sync.services.invoice_writeback import issued_invoice_record_from_erp
from ledger_sync.services.order_states import (
    POSTED_STATES,
)
from ledger_sync.services.writeback import write_backs_run

logger = logging.getLogger(__name__)


ACTOR_INVOICES = "system:invoice_callback"


@dataclass(frozen=True)
class InvoiceReportRequest:
    external_id: str
    order_atlas_id: int
    invoice_number: str
    amount: Decimal
    currency: str
    invoice_date: date
    due_date: date

    def fingerprint(self) -> str:
        return callback_fingerprint(
            {
                "externalId": self.external_id,
                "order": self.order_atlas_id,
                "invoiceNumber": self.invoice_number,
                "amount": money_text(self.amount),
                "currency": self.currency.upper(),
                "invoiceDate": self.invoice_date.isoformat(),
                "dueDate": self.due_date.isoformat(),
            }
        )


def invoice_report_accept(
    *,
    request: InvoiceReportRequest,
    raw_body: str,
    api_client: Any = None,
    enqueue: Callable[[int], None] | None = None,
) -> tuple[InvoiceReport, bool]:
    """Store the ERP's report of an invoice it issued for an order, checked against the order
    and its posted journal, and queue its creation in ATLAS; (report, created)."""
    fingerprint = request.fingerprint()
    repeat = repeat_of(InvoiceReport, request.external_id, fingerprint, "invoice")
    if repeat is not None:
        return repeat, False
    money_check(request.amount)
    if request.due_date < request.invoice_date:
        raise CallbackRejected(
            f"dueDate {request.due_date} is before invoiceDate {request.invoice_date}.",
            field="dueDate",
            code="invalid_date",
        )
    order, order_sync = _posted_order(request.order_atlas_id)
    _check_erp_invoices_this(order_sync)
    _check_matches_order(request, order)
    _check_order_not_invoiced(request, order, order_sync)
    _check_invoice_ids_unused(request, order_sync)
    try:
        with transaction.atomic():
            report = InvoiceReport.objects.create(
                external_id=request.external_id,
                request_fingerprint=fingerprint,
                request_json=raw_body,
                api_client=api_client if getattr(api_client, "pk", None) else None,
                order_atlas_id=order.atlas_id,
                invoice_number=request.invoice_number,
                amount=request.amount,
                currency=request.currency.upper(),
                invoice_date=request.invoice_date,
                due_date=request.due_date,
                received_at=timezone.now(),
            )
            queue = enqueue or _enqueue("ledger_sync.tasks.invoice_report_deliver_task")
            transaction.on_commit(lambda: queue(report.pk), robust=True)
    except IntegrityError:
        repeat = repeat_of(InvoiceReport, request.external_id, fingerprint, "invoice")
        if repeat is None:
            raise
        return repeat, False
    return report, True


def _posted_order(order_atlas_id: int) -> tuple[Order, OrderSync]:
    """The order and its sync, refused unless its posting journal is in the AR Ledger."""
    order = Order.objects.filter(atlas_id=order_atlas_id).first()
    if order is None:
        raise CallbackRejected(
            f"ATLAS order {order_atlas_id} is not known to ledger_sync.",
            field="order",
            code="unknown_order",
        )
    order_sync = OrderSync.objects.filter(order=order).first()
    posted = (
        order_sync is not None
        and order_sync.state in POSTED_STATES
        and Journal.objects.filter(
            order_sync=order_sync, kind=Journal.Kind.POSTING, status=Journal.Status.POSTED
        ).exists()
    )
    if not posted:
        state = order_sync.state if order_sync is not None else "not selected"
        raise CallbackRejected(
            f"Order {order.atlas_id} has no posted journal (state: {state}); an invoice is "
            "reported once its journal is in the AR Ledger.",
            field="order",
            code="order_not_posted",
        )
    assert order_sync is not None
    return order, order_sync


def _check_matches_order(request: InvoiceReportRequest, order: Order) -> None:
    currency = request.currency.upper()
    if currency != order.currency:
        raise CallbackRejected(
            f"currency {currency} differs from order {order.atlas_id}'s {order.currency}.",
            field="currency",
            code="currency_mismatch",
        )
    expected = abs(order.total_amount)
    if request.amount != expected:
        raise CallbackRejected(
            f"amount {request.amount} {currency} differs from order {order.atlas_id}'s posted "
            f"total {expected} {order.currency}.",
            field="amount",
            code="amount_mismatch",
        )


def _check_order_not_invoiced(
    request: InvoiceReportRequest, order: Order, order_sync: OrderSync
) -> None:
    issued = IssuedInvoice.objects.filter(order_sync=order_sync).first()
    if issued is not None and (
        issued.external_id != request.external_id or issued.number != request.invoice_number
    ):
        raise CallbackRejected(
            f"Order {order.atlas_id} already has invoice {issued.number} ({issued.external_id}).",
            field="order",
            code="already_invoiced",
        )
    # ATLAS may already hold an invoice for the order (created by hand, or by an earlier run, as
    # mirrored): the order's write-back records that one instead of creating another, so a
    # report of a different invoice would be "written" without ever reaching ATLAS.
    in_atlas = (
        Invoice.objects.filter(order_atlas_id=order.atlas_id)
        .exclude(sync_state=SyncState.MISSING)
        .exclude(external_id=request.external_id)
        .order_by("atlas_id")
        .first()
    )
    if in_atlas is not None:
        raise CallbackRejected(
            f"Order {order.atlas_id} already has invoice "
            f"{in_atlas.invoice_number or in_atlas.atlas_id} in ATLAS (id {in_atlas.atlas_id}, "
            f"externalId {in_atlas.external_id or 'empty'}); an order has one invoice.",
            field="order",
            code="already_invoiced",
        )


def _check_invoice_ids_unused(request: InvoiceReportRequest, order_sync: OrderSync) -> None:
    clash = IssuedInvoice.objects.exclude(order_sync=order_sync)
    if clash.filter(number=request.invoice_number).exists():
        raise CallbackRejected(
            f"Invoice number {request.invoice_number} is already used by another order.",
            field="invoiceNumber",
            code="duplicate_invoice_number",
        )
    if clash.filter(external_id=request.external_id).exists():
        raise CallbackRejected(
            f"externalId {request.external_id} is already used by another order's invoice.",
            field="externalId",
            code="duplicate_external_id",
        )


def _check_erp_invoices_this(order_sync: OrderSync) -> None:
    """The document rule (services/documents.py): unless the ERP numbers every invoice
    (INVOICE_NUMBERS_FROM_ERP), it reports only the invoices of payables to suppliers that do
    not self-bill. An order we invoice ourselves, or one with nothing open, is refused: a second
    document for it would be an invoice without an open item to match."""
    if settings.INVOICE_NUMBERS_FROM_ERP:
        return
    open_item = order_open_items([order_sync]).get(order_sync.pk)
    if open_item is None or open_item.document is OrderDocument.AWAIT_ERP:
        return
    order = order_sync.order
    if open_item.document is OrderDocument.NONE:
        raise CallbackRejected(
            f"Order {order.atlas_id} nets to 0.00 {order.currency} ({open_item.journal_reference}"
            "): it has no invoice.",
            field="order",
            code="no_document",
        )
    ours = (
        "a self-billing invoice (SB series)"
        if open_item.document is OrderDocument.SELF_BILLING
        else "our invoice (INV series)"
    )
    raise CallbackRejected(
        f"Order {order.atlas_id} is a {open_item.direction} that ledger_sync invoices itself "
        f"with {ours}; the ERP reports only the invoices of payables to suppliers that do not "
        "self-bill.",
        field="order",
        code="invoiced_by_us",
    )


def invoice_report_deliver(
    *, report_id: int, client: Any = None, now: datetime | None = None
) -> InvoiceReport | None:
    """Hand the ERP's invoice to the order's write-back, which looks it up in ATLAS by
    externalId and creates it through Invoice/Post when it is not there."""
    now = now or timezone.now()
    states = [CallbackState.ACCEPTED, CallbackState.FAILED]
    if not row_claim(InvoiceReport, report_id, states=states, now=now):
        return InvoiceReport.objects.filter(pk=report_id).first()
    report = InvoiceReport.objects.get(pk=report_id)
    order_sync = OrderSync.objects.select_related("order").get(
        order__atlas_id=report.order_atlas_id
    )
    try:
        with transaction.atomic():
            IssuedInvoice.objects.get_or_create(
                order_sync=order_sync,
                defaults={
                    "number": report.invoice_number,
                    "external_id": report.external_id,
                    "amount": report.amount,
                    "currency": report.currency,
                    "invoice_date": report.invoice_date,
                    "due_date": report.due_date,
                    "source": IssuedInvoice.Source.ERP_CALLBACK,
                },
            )
    except IntegrityError:
        pass  # issued meanwhile (by the sequence or a concurrent run): checked below
    issued_invoice_record_from_erp(
        order_sync=order_sync, number=report.invoice_number, external_id=report.external_id
    )
    written = write_backs_run(
        client=atlas_client_or_default(client), order_sync_ids=[order_sync.pk], now=now
    )
    step = WriteBackStep.objects.filter(
        order_sync=order_sync, kind=WriteBackStep.Kind.INVOICE
    ).first()
    issued = IssuedInvoice.objects.filter(order_sync=order_sync).first()
    in_atlas = _step_invoice_external_id(step)
    if issued is not None and issued.external_id != report.external_id:
        InvoiceReport.objects.filter(pk=report.pk).update(
            state=CallbackState.REJECTED,
            last_error=f"Order already invoiced as {issued.number} ({issued.external_id}).",
            claimed_until=None,
        )
    elif in_atlas is not None and in_atlas != report.external_id:
        # The write-back found another invoice of the order in ATLAS and recorded it: this
        # report's invoice is not in ATLAS, and must not be reported as written.
        InvoiceReport.objects.filter(pk=report.pk).update(
            state=CallbackState.REJECTED,
            last_error=f"ATLAS already holds another invoice for order {report.order_atlas_id} "
            f"(externalId {in_atlas or 'empty'}); an order has one invoice.",
            atlas_response_json=step.response_json if step is not None else "",
            claimed_until=None,
        )
    elif step is not None and step.status == WriteBackStep.Status.DONE:
        InvoiceReport.objects.filter(pk=report.pk).update(
            state=CallbackState.WRITTEN_TO_ATLAS,
            atlas_invoice_id=issued.atlas_invoice_id if issued else None,
            atlas_request_json=step.request_json,
            atlas_response_json=step.response_json,
            last_error="",
            next_attempt_at=None,
            claimed_until=None,
            confirmed_at=timezone.now(),
        )
    else:
        why = (step.last_error if step is not None else "") or (
            "the order's write-back did not run yet (the ERP code is written first)"
        )
        InvoiceReport.objects.filter(pk=report.pk).update(
            state=CallbackState.FAILED,
            last_error=why[:4000],
            next_attempt_at=(step.next_attempt_at if step is not None else None)
            or now + backoff_delay(report.attempts),
            claimed_until=None,
        )
    logger.info(
        "invoice_report.delivered",
        extra={"report": report.pk, "atlas_calls": written.atlas_calls},
    )
    report.refresh_from_db()
    return report


def _step_invoice_external_id(step: WriteBackStep | None) -> str | None:
    """The externalId of the ATLAS invoice a done invoice step recorded ("" when it has none);
    None when the step is not done or recorded nothing readable."""
    if step is None or step.status != WriteBackStep.Status.DONE or not step.response_json:
        return None
    try:
        raw = wire.loads(step.response_json)
    except ValueError:
        return None
    return (raw.get("externalId") or "") if isinstance(raw, dict) else None


def invoice_report_retry(*, report: InvoiceReport) -> InvoiceReport:
    return callback_retry(report, enqueue=_enqueue("ledger_sync.tasks.invoice_report_deliver_task"))


def invoice_reports_due(*, now: datetime, limit: int) -> list[int]:
    return callbacks_due(InvoiceReport, now=now, limit=limit)


def _enqueue(func: str) -> Callable[[int], None]:
    # This module's own seam for queueing, so that a test can hold back its tasks.
    return task_queuer(func)
