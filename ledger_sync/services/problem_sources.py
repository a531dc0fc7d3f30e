"""Where the error queue's state-bearing problems come from: one small adapter per source.

Each adapter reads one kind of record that carries its own failure state and says, as
`Observation`s, which problems it shows now. `problems_refresh` (services/problems.py) folds
them into the queue and resolves the rows whose source has recovered. Add a source with
`problem_source_register` (the reconciliation differences are added that way after merging).

Every adapter is one query (values(), no model instances, no query per row), so refreshing a
queue of thousands of problems stays cheap. Keys start with the source's model so two sources
of the same kind never collide.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Q
from django_q.models import Task

from ledger_sync.models import (
    BlockedReason,
    CounterpartyMapping,
    InboundDelivery,
    InvoiceReport,
    InvoiceSettlement,
    LedgerSettlementState,
    MasterDataCorrection,
    OrderState,
    OrderSync,
    PaymentConfirmation,
    Problem,
    ReconciliationDifference,
    ReconciliationRun,
    SyncRun,
    SyncRunError,
    WriteBackState,
    WriteBackStep,
)
from ledger_sync.models.inbound import CallbackState
from ledger_sync.services.admin_links import admin_change_url
from ledger_sync.services.mirror_records import ATLAS_ENTITIES, ENTITY_LEDGER

K = Problem.Kind
MESSAGE_MAX = 2000
TRACEBACK_MAX = 4000


@dataclass(frozen=True)
class Observation:
    """One problem as a source shows it now. `seen_at` is when the source last met it (a later
    value than the row's last seen is a new occurrence); `count` is the source's own count of
    occurrences when it keeps one (attempts), taken as a floor for the row's count."""

    key: str
    message: str
    seen_at: datetime
    record_label: str = ""
    fix_url: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    count: int | None = None


@dataclass(frozen=True)
class ProblemSource:
    kind: str
    name: str
    observe: Callable[[], Iterable[Observation]]


_SOURCES: list[ProblemSource] = []


def problem_source_register(source: ProblemSource) -> ProblemSource:
    """Add a source to every refresh (a second registration under the same name replaces it)."""
    _SOURCES[:] = [s for s in _SOURCES if s.name != source.name] + [source]
    return source


def problem_sources() -> list[ProblemSource]:
    return list(_SOURCES)


def _url(model: str, pk: object) -> str:
    return admin_change_url("ledger_sync", model, pk)


def _order_label(atlas_id: object, document_reference: str | None) -> str:
    return f"Order {atlas_id}" + (f" {document_reference}" if document_reference else "")


def _retry_note(next_attempt_at: object) -> str:
    if next_attempt_at is None:
        return " No automatic retry is left: retry it from its page once the cause is fixed."
    return f" Retried automatically from {next_attempt_at:%Y-%m-%d %H:%M} UTC."


# --- orders ----------------------------------------------------------------------------------


def blocked_orders() -> Iterator[Observation]:
    reasons = dict(BlockedReason.choices)
    rows = OrderSync.objects.filter(state=OrderState.BLOCKED).values(
        "pk",
        "updated_at",
        "blocked_reason",
        "blocked_message",
        "blocked_fix_url",
        "order__atlas_id",
        "order__document_reference",
    )
    for row in rows.iterator(chunk_size=2000):
        yield Observation(
            key=f"order_sync:{row['pk']}",
            message=row["blocked_message"] or reasons.get(row["blocked_reason"], "Blocked"),
            seen_at=row["updated_at"],
            record_label=_order_label(row["order__atlas_id"], row["order__document_reference"]),
            # Where the cause is fixed; the order's own page when the builder named none.
            fix_url=row["blocked_fix_url"] or _url("ordersync", row["pk"]),
            details={
                "reason": row["blocked_reason"],
                "reason_label": reasons.get(row["blocked_reason"], ""),
                "order_sync": row["pk"],
                "atlas_order_id": row["order__atlas_id"],
            },
        )


def failed_postings() -> Iterator[Observation]:
    rows = OrderSync.objects.filter(state=OrderState.FAILED).values(
        "pk",
        "updated_at",
        "attempts",
        "last_error",
        "next_attempt_at",
        "order__atlas_id",
        "order__document_reference",
    )
    for row in rows.iterator(chunk_size=2000):
        yield Observation(
            key=f"order_sync:{row['pk']}",
            message=(row["last_error"] or "Posting failed.")[:MESSAGE_MAX]
            + _retry_note(row["next_attempt_at"]),
            seen_at=row["updated_at"],
            record_label=_order_label(row["order__atlas_id"], row["order__document_reference"]),
            fix_url=_url("ordersync", row["pk"]),
            details={"order_sync": row["pk"], "attempts": row["attempts"]},
            count=row["attempts"] or None,
        )


# --- write-backs to ATLAS ----------------------------------------------------------------------


def failed_order_write_backs() -> Iterator[Observation]:
    kinds = dict(WriteBackStep.Kind.choices)
    rows = WriteBackStep.objects.filter(status=WriteBackStep.Status.FAILED).values(
        "pk",
        "kind",
        "attempts",
        "last_error",
        "next_attempt_at",
        "updated_at",
        "order_sync__order__atlas_id",
        "order_sync__order__document_reference",
    )
    for row in rows.iterator(chunk_size=2000):
        order = _order_label(
            row["order_sync__order__atlas_id"], row["order_sync__order__document_reference"]
        )
        yield Observation(
            key=f"write_back:{row['pk']}",
            message=(row["last_error"] or "ATLAS refused the write-back.")[:MESSAGE_MAX]
            + _retry_note(row["next_attempt_at"]),
            seen_at=row["updated_at"],
            record_label=f"{order}: {kinds.get(row['kind'], row['kind'])}",
            fix_url=_url("writebackstep", row["pk"]),
            details={"write_back_step": row["pk"], "kind": row["kind"]},
            count=row["attempts"] or None,
        )


def failed_counterparty_write_backs() -> Iterator[Observation]:
    mappings = CounterpartyMapping.objects.filter(write_back_state=WriteBackState.FAILED).values(
        "pk",
        "erp_code",
        "write_back_attempts",
        "last_error",
        "updated_at",
        "counterparty__atlas_id",
        "counterparty__name",
    )
    for row in mappings.iterator(chunk_size=2000):
        yield Observation(
            key=f"counterparty_mapping:{row['pk']}",
            message=(row["last_error"] or "ATLAS refused the ERP code.")[:MESSAGE_MAX],
            seen_at=row["updated_at"],
            record_label=f"Counterparty {row['counterparty__name']} "
            f"({row['counterparty__atlas_id']}): ERP code {row['erp_code']} as externalId",
            fix_url=_url("counterpartymapping", row["pk"]),
            details={"counterparty_mapping": row["pk"]},
            count=row["write_back_attempts"] or None,
        )
    corrections = MasterDataCorrection.objects.filter(
        status=MasterDataCorrection.Status.FAILED
    ).values(
        "pk",
        "push_attempts",
        "last_error",
        "approved_at",
        "requested_at",
        "counterparty__atlas_id",
        "counterparty__name",
    )
    for row in corrections.iterator(chunk_size=2000):
        yield Observation(
            key=f"master_data_correction:{row['pk']}",
            message=(row["last_error"] or "ATLAS refused the correction.")[:MESSAGE_MAX],
            seen_at=row["approved_at"] or row["requested_at"],
            record_label=f"Counterparty {row['counterparty__name']} "
            f"({row['counterparty__atlas_id']}): master-data correction {row['pk']}",
            fix_url=_url("masterdatacorrection", row["pk"]),
            details={"master_data_correction": row["pk"]},
            count=row["push_attempts"] or None,
        )


# --- inbound ---------------------------------------------------------------------------------


def failed_deliveries() -> Iterator[Observation]:
    rows = InboundDelivery.objects.filter(state=InboundDelivery.State.FAILED).values(
        "pk",
        "event_type",
        "entity_type",
        "entity_id",
        "attempts",
        "last_error",
        "next_attempt_at",
        "claimed_at",
        "received_at",
    )
    for row in rows.iterator(chunk_size=2000):
        yield Observation(
            key=f"inbound_delivery:{row['pk']}",
            message=(row["last_error"] or "Processing the webhook failed.")[:MESSAGE_MAX]
            + _retry_note(row["next_attempt_at"]),
            seen_at=row["claimed_at"] or row["received_at"],
            record_label=f"Webhook {row['event_type'] or 'event'} "
            f"{row['entity_type']} {row['entity_id'] or ''}".rstrip(),
            fix_url=_url("inbounddelivery", row["pk"]),
            details={"inbound_delivery": row["pk"], "attempts": row["attempts"]},
            count=row["attempts"] or None,
        )


_CALLBACK_PROBLEM = Q(state__in=[CallbackState.FAILED, CallbackState.REJECTED])


def _callback_message(row: dict, default: str) -> str:
    message = (row["last_error"] or default)[:MESSAGE_MAX]
    if row["state"] == CallbackState.REJECTED:
        return message + " ATLAS refused it: it is not retried; a person must look."
    return message + _retry_note(row["next_attempt_at"])


def failed_callbacks() -> Iterator[Observation]:
    fields = ("pk", "external_id", "state", "attempts", "last_error", "next_attempt_at")
    payments = PaymentConfirmation.objects.filter(_CALLBACK_PROBLEM).values(
        *fields, "updated_at", "amount", "currency"
    )
    for row in payments.iterator(chunk_size=2000):
        yield Observation(
            key=f"payment_confirmation:{row['pk']}",
            message=_callback_message(row, "Writing the payment to ATLAS failed."),
            seen_at=row["updated_at"],
            record_label=f"Payment {row['external_id']} ({row['amount']:,} {row['currency']})",
            fix_url=_url("paymentconfirmation", row["pk"]),
            details={"payment_confirmation": row["pk"], "state": row["state"]},
            count=row["attempts"] or None,
        )
    reports = InvoiceReport.objects.filter(_CALLBACK_PROBLEM).values(
        *fields, "updated_at", "invoice_number", "order_atlas_id"
    )
    for row in reports.iterator(chunk_size=2000):
        yield Observation(
            key=f"invoice_report:{row['pk']}",
            message=_callback_message(row, "Creating the invoice in ATLAS failed."),
            seen_at=row["updated_at"],
            record_label=f"Invoice {row['invoice_number']} ({row['external_id']}) for order "
            f"{row['order_atlas_id']}",
            fix_url=_url("invoicereport", row["pk"]),
            details={"invoice_report": row["pk"], "state": row["state"]},
            count=row["attempts"] or None,
        )
    settlements = InvoiceSettlement.objects.filter(state=InvoiceSettlement.State.FAILED).values(
        "pk", "invoice_atlas_id", "attempts", "last_error", "next_attempt_at", "created_at"
    )
    for row in settlements.iterator(chunk_size=2000):
        yield Observation(
            key=f"invoice_settlement:{row['pk']}",
            message=(row["last_error"] or "Setting isPaid in ATLAS failed.")[:MESSAGE_MAX]
            + _retry_note(row["next_attempt_at"]),
            seen_at=row["created_at"],
            record_label=f"Invoice {row['invoice_atlas_id']} paid (isPaid)",
            fix_url=_url("invoicesettlement", row["pk"]),
            details={"invoice_settlement": row["pk"]},
            count=row["attempts"] or None,
        )


def failed_settlements() -> Iterator[Observation]:
    """Payments whose settlement transaction the AR Ledger refused, could not take (failed,
    retried with backoff) or that a person must unblock (closed period, no bank account)."""
    rows = PaymentConfirmation.objects.filter(
        ledger_state__in=[LedgerSettlementState.FAILED, LedgerSettlementState.BLOCKED]
    ).values(
        "pk",
        "external_id",
        "ledger_state",
        "ledger_attempts",
        "ledger_error",
        "ledger_next_attempt_at",
        "updated_at",
        "amount",
        "currency",
    )
    for row in rows.iterator(chunk_size=2000):
        message = (row["ledger_error"] or "Posting the settlement failed.")[:MESSAGE_MAX]
        if row["ledger_state"] == LedgerSettlementState.BLOCKED:
            message += " Not retried automatically: retry the settlement from its page."
        else:
            message += _retry_note(row["ledger_next_attempt_at"])
        yield Observation(
            key=f"payment_settlement:{row['pk']}",
            message=message,
            seen_at=row["updated_at"],
            record_label=f"Settlement of payment {row['external_id']} "
            f"({row['amount']:,} {row['currency']})",
            fix_url=_url("paymentconfirmation", row["pk"]),
            details={"payment_confirmation": row["pk"], "ledger_state": row["ledger_state"]},
            count=row["ledger_attempts"] or None,
        )


# --- mirrors ---------------------------------------------------------------------------------


def _full_pass_keys() -> dict[str, list[str]]:
    """What a finished full pass of each mirror always has in its counts, and a resync of a few
    records does not: ATLAS counts every entity of a full pass (also with none read); the
    Gotransverse pass is always a full one and starts with the ledger."""
    return {
        SyncRun.System.ATLAS: list(ATLAS_ENTITIES),
        SyncRun.System.GOTRANSVERSE: [ENTITY_LEDGER],
    }


def mirror_errors() -> Iterator[Observation]:
    """The records the last finished full pass of each mirror could not take (a record fixed
    in the remote system resolves at the next pass), and a last pass that failed as a whole."""
    systems = dict(SyncRun.System.choices)
    for system, keys in _full_pass_keys().items():
        finished = (
            SyncRun.objects.filter(system=system)
            .exclude(status=SyncRun.Status.RUNNING)
            .exclude(trigger=SyncRun.Trigger.WEBHOOK)  # a webhook's resync of one order
            .order_by("-started_at", "-id")
        )
        latest = finished.first()
        if latest is not None and latest.status == SyncRun.Status.FAILED:
            yield Observation(
                key=f"{system}:pass",
                message=f"The last {systems[system]} pass failed: {latest.error_message}",
                seen_at=latest.finished_at or latest.started_at,
                record_label=f"{systems[system]} run {latest.pk}",
                fix_url=_url("syncrun", latest.pk),
                details={"sync_run": latest.pk},
            )
        taken = finished.filter(
            status__in=[SyncRun.Status.SUCCEEDED, SyncRun.Status.COMPLETED_WITH_ERRORS],
            counts__has_keys=keys,
        ).first()
        if taken is None:
            continue
        errors = SyncRunError.objects.filter(sync_run=taken).values(
            "pk", "entity", "remote_id", "field", "message", "created_at"
        )
        for row in errors.iterator(chunk_size=2000):
            what = f"{row['entity']} {row['remote_id']}".strip()
            yield Observation(
                key=f"{system}:{row['entity']}:{row['remote_id'] or '-'}:{row['field'] or '-'}",
                message=row["message"][:MESSAGE_MAX],
                seen_at=row["created_at"],
                record_label=f"{systems[system]} {what}",
                fix_url=_url("syncrunerror", row["pk"]),
                details={"sync_run": taken.pk, "field": row["field"]},
            )


# --- django-q2 tasks -------------------------------------------------------------------------


def _task_key(func: str, args: object, kwargs: object) -> str:
    digest = hashlib.sha256(repr((args, sorted((kwargs or {}).items()))).encode()).hexdigest()
    return f"task:{func}:{digest[:16]}"


def _first_line(result: object) -> str:
    # django-q2 stores a failure as "<error> : <traceback>"; the person reads the error.
    text = str(result or "The task failed.")
    return text.split(" : Traceback", 1)[0].strip().splitlines()[0][:MESSAGE_MAX]


def failed_tasks() -> Iterator[Observation]:
    """Tasks whose latest run failed (a later success of the same function and arguments
    resolves them), with the number of failures since the last success."""
    last_success = {}
    for func, args, kwargs, stopped in Task.objects.filter(success=True).values_list(
        "func", "args", "kwargs", "stopped"
    ):
        key = _task_key(func, args, kwargs)
        if key not in last_success or stopped > last_success[key]:
            last_success[key] = stopped
    failures: dict[str, list[dict]] = {}
    for row in Task.objects.filter(success=False).values(
        "id", "name", "func", "args", "kwargs", "result", "stopped"
    ):
        key = _task_key(row["func"], row["args"], row["kwargs"])
        if key in last_success and last_success[key] >= row["stopped"]:
            continue
        failures.setdefault(key, []).append(row)
    for key, rows in failures.items():
        latest = max(rows, key=lambda r: r["stopped"])
        yield Observation(
            key=key,
            message=_first_line(latest["result"]),
            seen_at=latest["stopped"],
            record_label=f"Task {latest['name']} ({latest['func'].rsplit('.', 1)[-1]})",
            fix_url=admin_change_url("django_q", "failure", latest["id"]),
            details={
                "task": latest["id"],
                "func": latest["func"],
                "traceback": str(latest["result"] or "")[-TRACEBACK_MAX:],
            },
            count=len(rows),
        )


def reconciliation_differences() -> Iterator[Observation]:
    """The differences of the latest finished reconciliation over every period (the scheduled
    kind), else of the latest finished one: a failed run compared nothing, so it neither adds
    nor resolves anything. A difference keeps its key across runs, so a repeat folds."""
    finished = ReconciliationRun.objects.filter(status=ReconciliationRun.Status.DONE)
    run = (
        finished.filter(period="").order_by("-started_at", "-id").first()
        or finished.order_by("-started_at", "-id").first()
    )
    if run is None:
        return
    levels = dict(ReconciliationDifference.Level.choices)
    kinds = dict(ReconciliationDifference.Kind.choices)
    rows = ReconciliationDifference.objects.filter(run=run).values(
        "pk",
        "level",
        "kind",
        "key",
        "record_label",
        "currency",
        "amount",
        "likely_cause",
        "fix_url",
    )
    for row in rows.iterator(chunk_size=2000):
        amount = f"{row['amount']:,.2f} {row['currency']}".strip()
        yield Observation(
            key=f"reconciliation:{row['key']}",
            message=f"{kinds.get(row['kind'], row['kind'])}: {row['likely_cause']} "
            f"(difference {amount})"[:MESSAGE_MAX],
            seen_at=run.finished_at or run.started_at,
            record_label=row["record_label"],
            fix_url=row["fix_url"] or _url("reconciliationdifference", row["pk"]),
            details={
                "run": run.pk,
                "level": levels.get(row["level"], row["level"]),
                "difference": row["pk"],
            },
        )


for _source in (
    ProblemSource(K.BLOCKED_ORDER, "blocked orders", blocked_orders),
    ProblemSource(K.FAILED_POSTING, "failed postings", failed_postings),
    ProblemSource(K.FAILED_POSTING, "payment settlements", failed_settlements),
    ProblemSource(K.FAILED_WRITE_BACK, "order write-backs", failed_order_write_backs),
    ProblemSource(K.FAILED_WRITE_BACK, "counterparty write-backs", failed_counterparty_write_backs),
    ProblemSource(K.FAILED_DELIVERY, "webhook deliveries", failed_deliveries),
    ProblemSource(K.FAILED_CALLBACK, "payment and invoice callbacks", failed_callbacks),
    ProblemSource(K.MIRROR_RECORD_ERROR, "mirror errors", mirror_errors),
    ProblemSource(K.FAILED_TASK, "failed tasks", failed_tasks),
    ProblemSource(K.RECONCILIATION, "reconciliation differences", reconciliation_differences),
):
    problem_source_register(_source)

# Which kinds each stage refreshes when it ends (the schedule refreshes them all).
INBOUND_KINDS = (K.FAILED_DELIVERY, K.FAILED_CALLBACK, K.FAILED_POSTING)
MIRROR_KINDS = (K.MIRROR_RECORD_ERROR,)
