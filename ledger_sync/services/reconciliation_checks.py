"""The three comparisons of a reconciliation, over plain values (no database, no HTTP), so that
each rule can be tested on its own. services/reconciliation.py loads the values and stores the
findings.

Amounts are signed debit-positive (a debit adds, a credit subtracts), in the record's currency.

Level 1, per order and per posted journal (any kind: posting, reversal, settlement, or a kind
added later — every posted journal is checked the same way):
- the ledger transactions are indexed by `source_transaction_reference`; a journal we recorded
  as posted with no ledger transaction is MISSING_IN_LEDGER, with two or more it is
  DUPLICATE_REFERENCE, with one whose entries (account, side, amount, currency, billing
  account) differ from our lines it is LEDGER_EDITED;
- a ledger transaction whose reference starts with one of our prefixes but belongs to no
  journal we recorded as posted is a STRAY_TRANSACTION;
- the current posting journal of each order is compared with ATLAS now: the order's
  `totalAmount` against the journal's control-account balance (receivables - payables, which
  equals the signed order total when the journal is built), and each item's gross (status 2)
  against what the journal booked for it. Any change is ORDER_CHANGED_AFTER_POSTING.

Level 2, per GL account, period and currency: Σ our posted journals' lines in the period they
landed in, Σ the ledger's entries booked in that period (their `accounting_period_id`, so a
transaction rolled forward out of a closed period counts where the ledger booked it), and the
ledger's balance endpoint for the period's dates (it counts a rolled-forward entry from the
first day of the period it landed in).

Level 3, per billing account (counterparty ERP code) and currency, cumulative to the end of the
reconciled period (`CounterpartyFacts` says how each of the three figures is made).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ledger_sync.services.reconciliation_values import (
    ACCOUNT_BALANCE,
    COUNTERPARTY_BALANCE,
    DUPLICATE_REFERENCE,
    LEDGER_EDITED,
    MISSING_IN_LEDGER,
    ORDER_CHANGED,
    OUR_PREFIXES,
    STRAY_TRANSACTION,
    ZERO,
    AtlasOrderNow,
    Finding,
    LedgerTransaction,
    Line,
    OurJournal,
    PeriodFacts,
    is_ours,
    money,
)

__all__ = [
    "ACCOUNT_BALANCE", "COUNTERPARTY_BALANCE", "DUPLICATE_REFERENCE", "LEDGER_EDITED",
    "MISSING_IN_LEDGER", "ORDER_CHANGED", "OUR_PREFIXES", "STRAY_TRANSACTION",
    "AtlasOrderNow", "CounterpartyFacts", "Finding", "LedgerTransaction", "Line", "OurJournal",
    "PeriodFacts", "account_findings", "counterparty_findings", "is_ours", "money",
    "order_findings",
]  # fmt: skip


def _debits(lines: Iterable[Line]) -> Decimal:
    return sum((line.amount for line in lines if not line.credit), ZERO)


def _credits(lines: Iterable[Line]) -> Decimal:
    return sum((line.amount for line in lines if line.credit), ZERO)


def _control(lines: Iterable[Line], control_accounts: frozenset[str]) -> Decimal:
    return sum((line.signed for line in lines if line.account in control_accounts), ZERO)


def _by_account(
    lines: Iterable[Line], period_ids: Iterable[int | None], sign: int
) -> dict[tuple[int | None, str, str], Decimal]:
    effect: dict[tuple[int | None, str, str], Decimal] = defaultdict(lambda: ZERO)
    for line, period_id in zip(lines, period_ids, strict=True):
        effect[(period_id, line.account, line.currency)] += sign * line.signed
    return dict(effect)


def _by_billing(
    lines: Iterable[Line], control_accounts: frozenset[str], sign: int
) -> dict[tuple[str, str], Decimal]:
    effect: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    for line in lines:
        if line.account in control_accounts and line.billing:
            effect[(line.billing, line.currency)] += sign * line.signed
    return dict(effect)


def _merge(into: dict, more: Mapping) -> None:
    for key, value in more.items():
        into[key] = into.get(key, ZERO) + value


def _fingerprints(lines: Iterable[Line]) -> Counter:
    """The entries as a multiset; zero amounts left out (the ledger keeps or drops them
    according to its create_zero_amount_entries, which moves no money either way)."""
    return Counter(line.fingerprint for line in lines if line.amount)


def _text(amount: Decimal | None) -> str | None:
    return str(amount) if amount else None


def _line_text(line: Line) -> str:
    side = "credit" if line.credit else "debit"
    billing = f" ({line.billing})" if line.billing else ""
    return f"{side} {line.account}{billing} {money(line.amount, line.currency)}"


# --------------------------------------------------------------------------------------------
# Level 1
# --------------------------------------------------------------------------------------------


def order_findings(
    *,
    journals: Sequence[OurJournal],
    ledger: Sequence[LedgerTransaction],
    atlas_orders: Mapping[int, AtlasOrderNow],
    control_accounts: frozenset[str],
    in_scope: Any,
    unposted_references: Mapping[str, int] | None = None,
) -> list[Finding]:
    """Level 1. `in_scope(period_id)` says whether a period is reconciled; `unposted_references`
    maps references of journals we hold but never recorded as posted to their pk (a crash
    between the ledger's answer and our record), to name the cause of such a "stray"."""
    by_reference: dict[str, list[LedgerTransaction]] = defaultdict(list)
    for transaction in ledger:
        by_reference[transaction.reference].append(transaction)
    findings: list[Finding] = []
    ours = {j.reference for j in journals}
    for journal in journals:
        found = by_reference.get(journal.reference, [])
        period_id = journal.period_id if journal.period_id is not None else None
        if not found:
            if in_scope(period_id):
                findings.append(_missing(journal, control_accounts))
            continue
        if not any(in_scope(t.period_id) for t in found) and not in_scope(period_id):
            continue
        if len(found) > 1:
            findings.append(_duplicate(journal, found, control_accounts))
        elif _fingerprints(journal.lines) != _fingerprints(found[0].lines):
            findings.append(_edited(journal, found[0], control_accounts))
    for transaction in ledger:
        stray = is_ours(transaction.reference) and transaction.reference not in ours
        if stray and in_scope(transaction.period_id):
            findings.append(_stray(transaction, control_accounts, unposted_references or {}))
    for journal in journals:
        if journal.is_current_posting and journal.order_pk is not None:
            order = atlas_orders.get(journal.order_pk)
            if order is not None and in_scope(journal.period_id):
                finding = _drift(journal, order, by_reference, control_accounts)
                if finding is not None:
                    findings.append(finding)
    return findings


def _missing(journal: OurJournal, control: frozenset[str]) -> Finding:
    ours = _debits(journal.lines)
    lines = [line for line in journal.lines if line.amount]
    return Finding(
        level=1,
        kind=MISSING_IN_LEDGER,
        key=f"journal:{journal.reference}:missing",
        label=journal.reference,
        currency=journal.currency,
        ours=ours,
        ledger=ZERO,
        amount=-ours,
        cause=(
            f"We recorded {journal.reference} as posted (ledger transaction "
            f"{journal.ledger_transaction_id or 'unknown'}), but the AR Ledger holds no posted "
            f"transaction with that reference: it was removed behind the API or posted to "
            f"another ledger. Post it again (reverse and re-post the order) once confirmed."
        ),
        reference=journal.reference,
        journal_pk=journal.pk,
        order_pk=journal.order_pk,
        account_effect=_by_account(lines, [journal.period_id] * len(lines), -1),
        billing_effect=_by_billing(lines, control, -1),
    )


def _duplicate(
    journal: OurJournal, found: list[LedgerTransaction], control: frozenset[str]
) -> Finding:
    ours = _debits(journal.lines)
    ledger = sum((_debits(t.lines) for t in found), ZERO)
    extra = found[1:]
    account_effect: dict = {}
    billing_effect: dict = {}
    for transaction in extra:
        _merge(account_effect, _by_account(transaction.lines, transaction.period_ids, 1))
        _merge(billing_effect, _by_billing(transaction.lines, control, 1))
    ids = [t.id for t in found]
    return Finding(
        level=1,
        kind=DUPLICATE_REFERENCE,
        key=f"journal:{journal.reference}:duplicate",
        label=journal.reference,
        currency=journal.currency,
        ours=ours,
        ledger=ledger,
        amount=ledger - ours,
        cause=(
            f"{len(found)} posted ledger transactions carry {journal.reference} "
            f"(ids {', '.join(map(str, ids))}); we posted it once, as "
            f"{journal.ledger_transaction_id or 'unknown'}. The order is booked {len(found)} "
            f"times: reverse the extra transaction(s) in the AR Ledger."
        ),
        reference=journal.reference,
        ledger_ids=ids,
        journal_pk=journal.pk,
        order_pk=journal.order_pk,
        account_effect=account_effect,
        billing_effect=billing_effect,
    )


def _edited(journal: OurJournal, found: LedgerTransaction, control: frozenset[str]) -> Finding:
    our_lines = [line for line in journal.lines if line.amount]
    ours_left = _fingerprints(our_lines)
    ledger_left = _fingerprints(found.lines)
    only_ours = ours_left - ledger_left
    only_ledger = ledger_left - ours_left
    by_fp = {line.fingerprint: line for line in [*our_lines, *found.lines]}
    ours_debits, ledger_debits = _debits(our_lines), _debits(found.lines)
    ours_credits, ledger_credits = _credits(our_lines), _credits(found.lines)
    amount = ledger_debits - ours_debits
    if not amount:
        amount = ledger_credits - ours_credits
    if not amount:  # moved between accounts or billing accounts: the amount moved
        amount = sum((by_fp[fp].amount * n for fp, n in only_ledger.items()), ZERO)
    account_effect = _by_account(found.lines, found.period_ids, 1)
    _merge(account_effect, _by_account(our_lines, [journal.period_id] * len(our_lines), -1))
    billing_effect = _by_billing(found.lines, control, 1)
    _merge(billing_effect, _by_billing(our_lines, control, -1))
    removed = "; ".join(_line_text(by_fp[fp]) for fp in sorted(only_ours))
    added = "; ".join(_line_text(by_fp[fp]) for fp in sorted(only_ledger))
    return Finding(
        level=1,
        kind=LEDGER_EDITED,
        key=f"journal:{journal.reference}:edited",
        label=journal.reference,
        currency=journal.currency,
        ours=ours_debits,
        ledger=ledger_debits,
        amount=amount,
        cause=(
            f"Ledger transaction {found.id} ({journal.reference}) no longer holds what we "
            f"posted: we sent [{removed or 'nothing else'}], the ledger now has "
            f"[{added or 'nothing else'}]. Posted transactions cannot be edited through the "
            f"API, so it was changed in the ledger's data; correct it there or reverse it."
        ),
        reference=journal.reference,
        ledger_ids=[found.id],
        journal_pk=journal.pk,
        order_pk=journal.order_pk,
        account_effect={k: v for k, v in account_effect.items() if v},
        billing_effect={k: v for k, v in billing_effect.items() if v},
        details={
            "ours_not_in_ledger": [_line_text(by_fp[fp]) for fp in sorted(only_ours)],
            "ledger_not_ours": [_line_text(by_fp[fp]) for fp in sorted(only_ledger)],
            "ours_credits": str(ours_credits),
            "ledger_credits": str(ledger_credits),
        },
    )


def _stray(
    transaction: LedgerTransaction,
    control: frozenset[str],
    unposted: Mapping[str, int],
) -> Finding:
    ledger = _debits(transaction.lines)
    currency = transaction.lines[0].currency if transaction.lines else ""
    journal_pk = unposted.get(transaction.reference)
    if journal_pk is not None:
        cause = (
            f"The ledger holds {transaction.reference} (transaction {transaction.id}); we built "
            f"that journal but never recorded it as posted (a crash between the ledger's "
            f"answer and our record). The next posting run looks it up and records it."
        )
    else:
        cause = (
            f"The ledger holds {transaction.reference} (transaction {transaction.id}) with our "
            f"reference prefix, but ledger_sync never posted it: it was entered by hand or by "
            f"another system. Reverse it in the AR Ledger, or find who posted it."
        )
    return Finding(
        level=1,
        kind=STRAY_TRANSACTION,
        key=f"ledger:{transaction.id}:stray",
        label=f"{transaction.reference} (ledger transaction {transaction.id})",
        currency=currency,
        ours=None,
        ledger=ledger,
        amount=ledger,
        cause=cause,
        reference=transaction.reference,
        ledger_ids=[transaction.id],
        journal_pk=journal_pk,
        account_effect=_by_account(transaction.lines, transaction.period_ids, 1),
        billing_effect=_by_billing(transaction.lines, control, 1),
    )


def _drift(
    journal: OurJournal,
    order: AtlasOrderNow,
    by_reference: Mapping[str, list[LedgerTransaction]],
    control: frozenset[str],
) -> Finding | None:
    booked_total = _control(journal.lines, control)
    booked_items: dict[int, Decimal] = defaultdict(lambda: ZERO)
    # An item's booked gross is the opposite of its revenue/expense and VAT lines: the control
    # line is one per order (netted, no item of its own), so it cannot be split per item.
    for line in journal.lines:
        if line.account not in control and line.item_atlas_id is not None:
            booked_items[line.item_atlas_id] -= line.signed
    changes = []
    for item_id in sorted(set(booked_items) | set(order.item_gross)):
        booked = booked_items.get(item_id)
        now = order.item_gross.get(item_id)
        if booked != now:
            changes.append(
                {
                    "item": item_id,
                    "posted": None if booked is None else str(booked),
                    "atlas_now": None if now is None else str(now),
                }
            )
    if order.total_amount == booked_total and not changes:
        return None
    found = by_reference.get(journal.reference, [])
    ledger = _control(found[0].lines, control) if len(found) == 1 else None
    currency = journal.currency
    if order.total_amount is None:
        what = f"{order.label} is no longer in ATLAS"
        amount = -booked_total
    else:
        what = (
            f"{order.label} now totals {money(order.total_amount, currency)} in ATLAS; "
            f"{journal.reference} booked {money(booked_total, currency)}"
        )
        amount = order.total_amount - booked_total
    if changes:
        what += f" ({len(changes)} item(s) changed: " + ", ".join(
            f"item {c['item']} {c['posted'] or 'none'} → {c['atlas_now'] or 'none'}"
            for c in changes
        )
        what += ")"
    return Finding(
        level=1,
        kind=ORDER_CHANGED,
        key=f"order:{order.atlas_id}:{journal.reference}:changed",
        label=order.label,
        currency=currency,
        atlas=order.total_amount,
        ours=booked_total,
        ledger=ledger,
        amount=amount,
        cause=(
            f"{what}. ATLAS changed the order after it was posted: reverse the journal "
            f"(the order is then journalled again from ATLAS's current data), or undo the "
            f"change in ATLAS."
        ),
        reference=journal.reference,
        journal_pk=journal.pk,
        order_pk=order.pk,
        details={"items": changes},
    )


# --------------------------------------------------------------------------------------------
# Level 2
# --------------------------------------------------------------------------------------------


def account_findings(
    *,
    journals: Sequence[OurJournal],
    ledger: Sequence[LedgerTransaction],
    balances: Mapping[tuple[int, str, str], Decimal],
    periods: Sequence[PeriodFacts],
    explained_by: Sequence[Finding] = (),
) -> tuple[list[Finding], int]:
    """Level 2 over `periods`; `balances` maps (period id, account, currency) to the balance
    endpoint's debit-positive figure. Returns the findings and how many (period, account,
    currency) rows were compared."""
    wanted = {p.id: p for p in periods}
    ours: dict[tuple[int, str, str], Decimal] = defaultdict(lambda: ZERO)
    for journal in journals:
        if journal.period_id in wanted:
            for line in journal.lines:
                ours[(journal.period_id, line.account, line.currency)] += line.signed
    entries: dict[tuple[int, str, str], Decimal] = defaultdict(lambda: ZERO)
    for transaction in ledger:
        for line, period_id in zip(transaction.lines, transaction.period_ids, strict=True):
            if period_id in wanted:
                entries[(period_id, line.account, line.currency)] += line.signed
    keys = sorted(set(ours) | set(entries) | {k for k in balances if k[0] in wanted})
    findings = []
    for key in keys:
        period_id, account, currency = key
        mine, theirs = ours.get(key, ZERO), entries.get(key, ZERO)
        balance = balances.get(key, ZERO)
        if mine == theirs == balance:
            continue
        period = wanted[period_id]
        amount = theirs - mine if theirs != mine else balance - mine
        causes = [
            f"{f.reference or f.label} ({money(f.account_effect[key], currency)})"
            for f in explained_by
            if f.account_effect.get(key)
        ]
        explained = sum(
            (f.account_effect[key] for f in explained_by if key in f.account_effect), ZERO
        )
        if causes:
            cause = "Explained by the level-1 differences " + "; ".join(causes) + "."
            if explained != theirs - mine:
                cause += (
                    f" They account for {money(explained, currency)} of "
                    f"{money(theirs - mine, currency)}; the rest was booked by another source."
                )
        else:
            cause = (
                "The ledger's entries on this account differ from our posted lines with no "
                "level-1 difference behind it: entries booked by another source (a billing run, "
                "a manual entry without our reference)."
            )
        if theirs != balance:
            cause += (
                f" The balance endpoint says {money(balance, currency)} while the entries sum "
                f"to {money(theirs, currency)}: ask Gotransverse why the ledger disagrees with "
                f"itself."
            )
        findings.append(
            Finding(
                level=2,
                kind=ACCOUNT_BALANCE,
                key=f"account:{period_id}:{account}:{currency}",
                label=f"{account} · {period.name}",
                currency=currency,
                ours=mine,
                ledger=theirs,
                ledger_balance=balance,
                amount=amount,
                cause=cause,
                period=period.name,
                gl_account=account,
            )
        )
    return findings, len(keys)


# --------------------------------------------------------------------------------------------
# Level 3
# --------------------------------------------------------------------------------------------


@dataclass
class CounterpartyFacts:
    """The three figures per (billing account, currency), debit-positive (what the
    counterparty owes us; negative: what we owe it).

    - atlas: for every order we posted (its posting journal is or was in the ledger), its ATLAS
      invoices minus its ATLAS payments, signed by the order's direction (the sign of the
      control balance we booked for it: receivable +, payable -). Invoices and payments are
      positive in ATLAS. An order whose invoice is on its way to ATLAS (its write-back queued,
      or the supplier's invoice awaited from the ERP) counts at the open item we booked until
      ATLAS holds the invoice (`invoices_expected`); one whose write-back failed counts at what
      ATLAS holds, and the failure is named (`write_backs_failed`), as is an invoice written
      after the mirror pass compared (`invoices_not_mirrored`).
    - ours: Σ debit - credit of our posted journals' lines (postings, reversals, settlements,
      any kind) on the receivables and payables accounts carrying this billing account,
      minus the payments we accepted (PaymentConfirmation, not rejected) that no posted
      settlement journal (ATLAS-PAYMENT-{pk}) books yet — so a payment is counted once,
      whether or not its settlement is in the ledger.
    - ledger: Σ debit - credit of the ledger's entries on those accounts carrying this billing
      account, read from the same paged transaction listing as levels 1 and 2.
    """

    atlas: dict[tuple[str, str], Decimal] = field(default_factory=lambda: defaultdict(lambda: ZERO))
    ours: dict[tuple[str, str], Decimal] = field(default_factory=lambda: defaultdict(lambda: ZERO))
    ledger: dict[tuple[str, str], Decimal] = field(
        default_factory=lambda: defaultdict(lambda: ZERO)
    )
    labels: dict[str, str] = field(default_factory=dict)
    counterparty_pks: dict[str, int] = field(default_factory=dict)
    unsettled_payments: dict[tuple[str, str], Decimal] = field(
        default_factory=lambda: defaultdict(lambda: ZERO)
    )
    invoices_expected: dict[tuple[str, str], Decimal] = field(
        default_factory=lambda: defaultdict(lambda: ZERO)
    )
    write_backs_failed: dict[tuple[str, str], list[str]] = field(
        default_factory=lambda: defaultdict(list)
    )
    invoices_not_mirrored: dict[tuple[str, str], list[str]] = field(
        default_factory=lambda: defaultdict(list)
    )


def counterparty_findings(
    *, facts: CounterpartyFacts, explained_by: Sequence[Finding] = ()
) -> tuple[list[Finding], int]:
    keys = sorted(set(facts.atlas) | set(facts.ours) | set(facts.ledger))
    findings = []
    for key in keys:
        code, currency = key
        atlas = facts.atlas.get(key, ZERO)
        ours = facts.ours.get(key, ZERO)
        ledger = facts.ledger.get(key, ZERO)
        if atlas == ours == ledger:
            continue
        causes = []
        if ledger != ours:
            explained = [f for f in explained_by if f.billing_effect.get(key)]
            if explained:
                causes.append(
                    "Ledger vs ours explained by the level-1 differences "
                    + "; ".join(
                        f"{f.reference or f.label} ({money(f.billing_effect[key], currency)})"
                        for f in explained
                    )
                    + "."
                )
            unsettled = facts.unsettled_payments.get(key, ZERO)
            if unsettled:
                causes.append(
                    f"{money(unsettled, currency)} of payments we accepted have no settlement "
                    f"transaction in the ledger yet."
                )
            if not causes:
                causes.append(
                    "The ledger's receivable/payable entries for this billing account differ "
                    "from ours: entries booked by another source."
                )
        failed_write_backs = facts.write_backs_failed.get(key, [])
        if atlas != ours and failed_write_backs:
            causes.append(
                "ATLAS does not hold the invoice of "
                + "; ".join(failed_write_backs)
                + ". Fix the cause and retry the write-back (Write-backs to ATLAS, or the "
                "order's page); the next reconciliation then compares ATLAS's invoice."
            )
        not_mirrored = facts.invoices_not_mirrored.get(key, [])
        if atlas != ours and not_mirrored:
            causes.append(
                "ledger_sync wrote the invoice of " + ", ".join(not_mirrored) + " to ATLAS "
                "after the last ATLAS mirror pass, so the mirror compared does not hold it yet: "
                "reconcile with a fresh mirror pass (without --no-mirror)."
            )
        if atlas != ours and not failed_write_backs and not not_mirrored:
            causes.append(
                f"ATLAS's invoices minus payments ({money(atlas, currency)}) differ from our "
                f"open items ({money(ours, currency)}): an invoice not yet written back to "
                f"ATLAS (or not yet mirrored: reconcile with a fresh mirror pass), or a "
                f"payment ATLAS recorded that ledger_sync did not accept (or the reverse)."
            )
        findings.append(
            Finding(
                level=3,
                kind=COUNTERPARTY_BALANCE,
                key=f"counterparty:{code}:{currency}",
                label=facts.labels.get(code, code),
                currency=currency,
                atlas=atlas,
                ours=ours,
                ledger=ledger,
                amount=ledger - ours if ledger != ours else atlas - ours,
                cause=" ".join(causes),
                billing=code,
                details={
                    "counterparty_pk": facts.counterparty_pks.get(code),
                    "invoices_expected_in_atlas": _text(facts.invoices_expected.get(key)),
                    "write_backs_failed": failed_write_backs or None,
                    "invoices_not_mirrored": not_mirrored or None,
                },
            )
        )
    return findings, len(keys)
