"""Write-backs to ATLAS after a journal is posted: the ERP document code, then the invoice
(services/invoice_writeback.py; the steps themselves in services/write_back_steps.py).

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
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from integration import wire
from integration.atlas.client import AtlasClient
from integration.atlas.errors import AtlasError
from ledger_sync.models import (
    Journal,
    OrderState,
    OrderSync,
    WriteBackStep,
)
from ledger_sync.services.claims import orders_claim, orders_release, worker_id_new
from ledger_sync.services.db import rows_update
from ledger_sync.services.invoice_writeback import (
    invoiced_earlier_revisions_close,
    invoices_write,
)
from ledger_sync.services.order_states import (
    WRITE_BACK_STATES,
    TransitionBatch,
)
from ledger_sync.services.remote import atlas_client_from_settings
from ledger_sync.services.write_back_steps import (
    STEP_FIELDS,
    WAITING_FOR_ERP_INVOICE,
    OrderMove,
    WriteBackReport,
    due_steps,
    steps_failed,
)

logger = logging.getLogger(__name__)

# --- steps ---------------------------------------------------------------------------------------


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
            erp_steps = due_steps(
                WriteBackStep.Kind.ERP_CODE, states=WRITE_BACK_STATES, now=now, ids=claimed
            )
            if erp_steps:
                _erp_codes_write(erp_steps, client=client, report=report)
            invoice_steps = due_steps(
                WriteBackStep.Kind.INVOICE,
                states=(OrderState.ERP_CODE_WRITTEN,),
                now=now,
                ids=claimed,
            )
            if invoice_steps:
                invoices_write(invoice_steps, client=client, report=report)
            invoiced_earlier_revisions_close(claimed)
        finally:
            orders_release(order_sync_ids=claimed, worker_id=worker_id)
    report.waiting_for_erp = WriteBackStep.objects.filter(
        kind=WriteBackStep.Kind.INVOICE,
        status=WriteBackStep.Status.PENDING,
        waiting_for=WAITING_FOR_ERP_INVOICE,
    ).count()
    report.atlas_calls = client.stats.requests - calls_before
    return report


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
        steps_failed([s for s, _ in ready], error=str(error), records=records, report=report)
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
                OrderMove(
                    step.order_sync,
                    f"ERP document code {code} written to ATLAS order "
                    f"{step.order_sync.order.atlas_id}",
                )
            )
    transitions = TransitionBatch()
    with transaction.atomic():
        rows_update(WriteBackStep, [s for s, *_ in done], STEP_FIELDS)
        rows_update(OrderSync, [s.order_sync for s, *_ in done], ["erp_code"])
        transitions.add_many(moved, OrderState.ERP_CODE_WRITTEN, note=lambda m: m.note)
        transitions.save()
    report.erp_codes_written += len(done)
    if missing:
        steps_failed(
            [s for s, _ in missing],
            error="ATLAS answered without confirming the ERP document code of this order",
            records=[r for _, r in missing],
            report=report,
        )


# --- invoices -------------------------------------------------------------------------------------
