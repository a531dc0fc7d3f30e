"""Journals as AR Ledger records and back: the transaction a journal is sent as, and the
ledger's answers (a lookup, an error) read as one kind of bulk result. No domain imports."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from integration.gotransverse.errors import GotransverseError
from integration.gotransverse.records import (
    BulkTransactionResult,
    EntryInput,
    TransactionInput,
)
from ledger_sync.models import (
    AccountingPeriod,
    Journal,
    JournalLine,
)


def journal_transaction_input(journal: Journal) -> TransactionInput:
    lines = sorted(journal.lines.all(), key=lambda line: line.position)
    return TransactionInput(
        source_transaction_reference=journal.source_transaction_reference,
        entries=tuple(
            EntryInput(
                credit=line.side == JournalLine.Side.CREDIT,
                amount=line.amount,
                currency=line.currency,
                gl_account_num=line.gl_account,
                description=line.description or None,
                billing_account_num=line.billing_account_num or None,
                occurred_on=journal.occurred_on,
                event_date=journal.event_date,
                entry_values=line.entry_values or None,
            )
            for line in lines
        ),
    )


def bulk_result_from_transaction(found: Any) -> BulkTransactionResult:
    return BulkTransactionResult(
        index=0,
        requested=found.source_transaction_reference,
        answered=True,
        id=found.id,
        source_transaction_reference=found.source_transaction_reference,
        source_batch_reference=found.source_batch_reference,
        target_batch_key=found.target_batch_key,
        code=None,
        error_message=None,
        entries=found.entries,
        raw=found.raw,
    )


def error_result(journal: Journal, error: GotransverseError) -> BulkTransactionResult:
    return BulkTransactionResult(
        index=0,
        requested=journal.source_transaction_reference,
        answered=True,
        id=None,
        source_transaction_reference=journal.source_transaction_reference,
        source_batch_reference=None,
        target_batch_key=None,
        code=error.status,
        error_message=f"[{error.code}] {error.message}" if error.code else error.message,
        entries=(),
    )


def result_raw(result: BulkTransactionResult | None) -> Any:
    if result is None:
        return None
    if result.raw is not None:
        return result.raw
    return {
        "id": result.id,
        "source_transaction_reference": result.source_transaction_reference,
        "code": result.code,
        "error_message": result.error_message,
    }


def result_message(result: BulkTransactionResult) -> str:
    code = f"code {result.code}: " if result.code is not None else ""
    return f"{code}{result.error_message or 'no message'}"


def period_names(pairs: Iterable[tuple[Any, BulkTransactionResult]]) -> dict[int, str]:
    ids = {pid for _, result in pairs for pid in result.accounting_period_ids}
    if not ids:
        return {}
    return {
        p.gotransverse_id: p.name
        for p in AccountingPeriod.objects.filter(gotransverse_id__in=ids).only(
            "gotransverse_id", "name"
        )
    }


def landed_period(result: BulkTransactionResult, names: dict[int, str]) -> str:
    ids = sorted(result.accounting_period_ids)
    return ", ".join(names.get(pid, f"period {pid}") for pid in ids)[:255]
