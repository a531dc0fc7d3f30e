"""The document of an order, in words, for its admin page (the rule: services/documents.py)."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Exists, OuterRef, QuerySet

from ledger_sync.models import InvoiceNumberSequence, IssuedInvoice, OrderSync, WriteBackStep
from ledger_sync.services.documents import OrderDocument, order_open_items
from ledger_sync.services.write_back_steps import WAITING_FOR_ERP_INVOICE

__all__ = [
    "AWAITING_ERP_INVOICE_TEXT",
    "WAITING_FOR_ERP_INVOICE_TEXT",
    "order_document_text",
    "order_syncs_with_erp_invoice_wait",
]

AWAITING_ERP_INVOICE_TEXT = "awaiting the supplier's invoice from the ERP"
# Beside the state in the order list ("ERP code written to ATLAS, waiting for ...").
WAITING_FOR_ERP_INVOICE_TEXT = "waiting for the supplier's invoice from the ERP"


def _amount(amount: Decimal, currency: str) -> str:
    return f"{amount:,.2f} {currency}".strip()


def order_document_text(order_sync: OrderSync) -> str:
    """ "Our invoice INV-2026-0001 (17,850.00 EUR)", "Self-billing invoice SB-…", "Awaiting the
    supplier's invoice from the ERP …", "No document: …", or what it will be once posted."""
    currency = order_sync.order.currency
    issued = IssuedInvoice.objects.filter(order_sync=order_sync).first()
    open_item = order_open_items([order_sync]).get(order_sync.pk)
    if issued is not None:
        figure = _amount(issued.amount, issued.currency)
        if issued.source == IssuedInvoice.Source.ERP_CALLBACK:
            text = f"Invoice {issued.number} from the ERP ({figure})"
        elif issued.series == InvoiceNumberSequence.Series.SELF_BILLING:
            text = f"Self-billing invoice {issued.number} ({figure})"
        else:
            text = f"Our invoice {issued.number} ({figure})"
        if open_item is not None and open_item.amount != issued.amount:
            text += (
                f"; differs from the open item of {open_item.journal_reference}, "
                f"{_amount(open_item.amount, currency)}: correct the invoice in ATLAS"
            )
        return text
    if open_item is None:
        return "Decided when the journal is posted (by the direction of its open item)"
    figure = _amount(open_item.amount, currency)
    step = WriteBackStep.objects.filter(
        order_sync=order_sync, kind=WriteBackStep.Kind.INVOICE
    ).first()
    if step is not None and step.status == WriteBackStep.Status.DONE:
        if open_item.document is OrderDocument.NONE:
            return f"No document: the order nets to {_amount(Decimal('0.00'), currency)}"
        return "Invoice already held by ATLAS for this order (see the write-back)"
    if open_item.document is OrderDocument.AWAIT_ERP:
        return (
            f"{AWAITING_ERP_INVOICE_TEXT[0].upper()}{AWAITING_ERP_INVOICE_TEXT[1:]} for the "
            f"payable of {figure} (POST /api/invoices/); none is issued by us"
        )
    if step is not None and step.waiting_for == WAITING_FOR_ERP_INVOICE:
        return f"Awaiting the invoice number from the ERP for {figure} (INVOICE_NUMBERS_FROM_ERP)"
    if open_item.document is OrderDocument.SELF_BILLING:
        return f"Self-billing invoice (SB series) for {figure}, issued after the ERP code"
    if open_item.document is OrderDocument.OUR_INVOICE:
        return f"Our invoice (INV series) for {figure}, issued after the ERP code"
    return f"No document: the order nets to {_amount(Decimal('0.00'), currency)}"


def order_syncs_with_erp_invoice_wait(queryset: QuerySet[OrderSync]) -> QuerySet[OrderSync]:
    """`queryset` annotated with `awaits_erp_invoice`: its invoice step waits for the ERP."""
    return queryset.annotate(
        awaits_erp_invoice=Exists(
            WriteBackStep.objects.filter(
                order_sync=OuterRef("pk"),
                kind=WriteBackStep.Kind.INVOICE,
                status=WriteBackStep.Status.PENDING,
                waiting_for=WAITING_FOR_ERP_INVOICE,
            )
        )
    )
