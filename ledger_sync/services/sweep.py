"""The inbound sweep: what a lost enqueue, a dead worker or a backoff left behind — webhook
deliveries, payment confirmations, invoice reports and settlements — is queued again."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from ledger_sync.models import (
    InboundDelivery,
    PaymentConfirmation,
)
from ledger_sync.services.inbound import inbound_delivery_process
from ledger_sync.services.invoice_reports import invoice_report_deliver, invoice_reports_due
from ledger_sync.services.payments import (
    invoice_settlement_send,
    order_payment_states_catch_up,
    payment_confirmation_deliver,
    payment_confirmations_due,
    payment_invoice_check,
    payment_invoice_checks_due,
    settlements_due,
)
from ledger_sync.services.problem_sources import INBOUND_KINDS
from ledger_sync.services.problems import problems_refresh_safely
from ledger_sync.services.remote import gotransverse_client_from_settings
from ledger_sync.services.settlements import payment_settlement_post, payment_settlements_due

logger = logging.getLogger(__name__)


# A RECEIVED delivery older than this was never picked up by its task (enqueue lost): the sweep
# takes it. Long enough that a busy queue is not raced for nothing (claims make it harmless).
RECEIVED_GRACE = timedelta(minutes=5)


SWEEP_LIMIT = 50


@dataclass
class SweepReport:
    deliveries: int = 0
    payments: int = 0
    invoice_checks: int = 0
    settlements: int = 0
    invoice_reports: int = 0
    ledger_settlements: int = 0
    order_states: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def inbound_sweep(
    *,
    now: datetime | None = None,
    atlas_client: Any = None,
    ledger_client: Any = None,
    limit: int = SWEEP_LIMIT,
) -> SweepReport:
    """Pick up inbound work that is due and was not done: deliveries whose task never ran or
    failed transiently, payments and invoice reports not yet in ATLAS (ATLAS was down),
    settlements still to send, payments whose settlement transaction is due in the AR Ledger
    (services/settlements.py), and orders whose paid state waited for their write-back.
    Bounded per run; the schedule runs it every minute."""
    now = now or timezone.now()
    report = SweepReport()
    stale = now - timedelta(seconds=settings.INBOUND_CLAIM_TIMEOUT_SECONDS)
    due_deliveries = list(
        InboundDelivery.objects.filter(
            Q(state=InboundDelivery.State.RECEIVED, received_at__lt=now - RECEIVED_GRACE)
            | Q(state=InboundDelivery.State.FAILED, next_attempt_at__lte=now)
            | Q(state=InboundDelivery.State.PROCESSING, claimed_at__lt=stale)
        )
        .order_by("received_at")
        .values_list("pk", flat=True)[:limit]
    )
    settlement_pks = payment_settlements_due(now=now, limit=limit)
    if settlement_pks and ledger_client is None:
        ledger_client = gotransverse_client_from_settings()  # one session for the sweep
    work: list[tuple[str, list[int], Callable[[int], Any]]] = [
        (
            "deliveries",
            due_deliveries,
            lambda pk: inbound_delivery_process(delivery_id=pk, atlas_client=atlas_client, now=now),
        ),
        (
            "payments",
            payment_confirmations_due(now=now, limit=limit),
            lambda pk: payment_confirmation_deliver(
                confirmation_id=pk, client=atlas_client, now=now
            ),
        ),
        (
            "invoice_checks",
            payment_invoice_checks_due(now=now, limit=limit),
            lambda pk: payment_invoice_check(
                confirmation=PaymentConfirmation.objects.get(pk=pk), client=atlas_client, now=now
            ),
        ),
        (
            "settlements",
            settlements_due(now=now, limit=limit),
            lambda pk: invoice_settlement_send(settlement_id=pk, client=atlas_client, now=now),
        ),
        (
            "invoice_reports",
            invoice_reports_due(now=now, limit=limit),
            lambda pk: invoice_report_deliver(report_id=pk, client=atlas_client, now=now),
        ),
        (
            "ledger_settlements",
            settlement_pks,
            lambda pk: payment_settlement_post(confirmation_id=pk, client=ledger_client, now=now),
        ),
    ]
    for kind, pks, run in work:
        for pk in pks:
            try:
                run(pk)
            except Exception:
                # One record that fails unexpectedly (a bug, a database hiccup) must not stop
                # the rest of the sweep: it is logged with its traceback, and its claim (taken
                # before the failure) keeps it out of the next sweeps until the claim runs out.
                logger.exception("inbound.sweep_item_failed", extra={"kind": kind, "pk": pk})
                continue
            setattr(report, kind, getattr(report, kind) + 1)
    # Orders paid while their write-back was still running move once it made them INVOICED.
    report.order_states = order_payment_states_catch_up(limit=limit)
    problems_refresh_safely(kinds=INBOUND_KINDS)
    return report
