"""The reconciliation rules over plain values: every posted journal counts whatever its kind,
a settlement is not counted twice with its payment, periods compare where the ledger booked."""

from __future__ import annotations

from decimal import Decimal

from ledger_sync.services import reconciliation_checks as checks
from ledger_sync.services.reconciliation_values import Line, OurJournal

D = Decimal
AR, REVENUE, BANK = "1100", "4000", "1000"
CONTROL = frozenset({AR, "2000"})


def _journal(reference: str, kind: str, lines: list[Line], period: int = 7) -> OurJournal:
    return OurJournal(
        pk=hash(reference) % 10_000,
        reference=reference,
        kind=kind,
        currency="EUR",
        period_id=period,
        ledger_transaction_id="1",
        lines=lines,
    )


def _ledger(reference: str, lines: list[Line], period: int = 7) -> checks.LedgerTransaction:
    return checks.LedgerTransaction(
        id=abs(hash(reference)) % 10_000,
        reference=reference,
        lines=[Line(ln.account, ln.credit, ln.amount, ln.currency, ln.billing) for ln in lines],
        period_ids=tuple(period for _ in lines),
    )


SALE = [Line(AR, False, D("100.00"), "EUR", "CUST-1"), Line(REVENUE, True, D("100.00"), "EUR")]
SETTLE = [Line(BANK, False, D("40.00"), "EUR"), Line(AR, True, D("40.00"), "EUR", "CUST-1")]


def test_a_journal_of_a_kind_not_known_yet_is_checked_and_summed_like_any_other():
    journals = [
        _journal("ATLAS-ORDER-1-R1", "posting", SALE),
        _journal("ATLAS-PAYMENT-9", "accrual", SETTLE),
    ]
    ledger = [_ledger("ATLAS-ORDER-1-R1", SALE)]

    level1 = checks.order_findings(
        journals=journals, ledger=ledger, atlas_orders={}, control_accounts=CONTROL,
        in_scope=lambda _period: True,
    )  # fmt: skip
    level2, _ = checks.account_findings(
        journals=journals,
        ledger=ledger,
        balances={(7, AR, "EUR"): D("100.00"), (7, REVENUE, "EUR"): D("-100.00")},
        periods=[checks.PeriodFacts(id=7, name="March 2026", start=None, end=None)],
        explained_by=level1,
    )

    assert [(f.kind, f.reference, f.amount) for f in level1] == [
        ("missing_in_ledger", "ATLAS-PAYMENT-9", D("-40.00"))
    ]
    assert {(f.gl_account, f.ours, f.ledger, f.amount) for f in level2} == {
        (BANK, D("40.00"), D("0.00"), D("-40.00")),
        (AR, D("60.00"), D("100.00"), D("40.00")),
    }
    assert all("ATLAS-PAYMENT-9" in f.cause for f in level2)


def test_a_settled_payment_counts_once_in_our_open_items():
    facts = checks.CounterpartyFacts()
    key = ("CUST-1", "EUR")
    facts.atlas[key] = D("60.00")  # invoiced 100, paid 40 in ATLAS
    facts.ours[key] = D("60.00")  # sale 100 - settlement journal 40
    facts.ledger[key] = D("60.00")

    findings, compared = checks.counterparty_findings(facts=facts)

    assert findings == [] and compared == 1


def test_a_payment_accepted_without_a_settlement_in_the_ledger_is_named_as_the_cause():
    facts = checks.CounterpartyFacts()
    key = ("CUST-1", "EUR")
    facts.atlas[key] = D("60.00")
    facts.ours[key] = D("60.00")  # 100 booked - 40 accepted, no settlement journal
    facts.unsettled_payments[key] = D("40.00")
    facts.ledger[key] = D("100.00")

    (finding,) = checks.counterparty_findings(facts=facts)[0]

    assert (finding.atlas, finding.ours, finding.ledger, finding.amount) == (
        D("60.00"), D("60.00"), D("100.00"), D("40.00"),
    )  # fmt: skip
    assert "40.00 EUR of payments we accepted have no settlement transaction" in finding.cause


def test_a_transaction_rolled_forward_counts_in_the_period_the_ledger_booked_it():
    journal = _journal("ATLAS-ORDER-1-R1", "posting", SALE, period=8)  # landed in April
    ledger = [_ledger("ATLAS-ORDER-1-R1", SALE, period=8)]
    march = checks.PeriodFacts(id=7, name="March 2026", start=None, end=None)
    april = checks.PeriodFacts(id=8, name="April 2026", start=None, end=None)
    balances = {(8, AR, "EUR"): D("100.00"), (8, REVENUE, "EUR"): D("-100.00")}

    for periods in ([march], [april]):
        findings, _ = checks.account_findings(
            journals=[journal], ledger=ledger, balances=balances, periods=periods
        )
        assert findings == []


def test_the_balance_endpoint_disagreeing_with_the_entries_is_reported_as_the_ledgers_own():
    journal = _journal("ATLAS-ORDER-1-R1", "posting", SALE)
    ledger = [_ledger("ATLAS-ORDER-1-R1", SALE)]
    balances = {(7, AR, "EUR"): D("90.00"), (7, REVENUE, "EUR"): D("-100.00")}

    (finding,), _ = checks.account_findings(
        journals=[journal],
        ledger=ledger,
        balances=balances,
        periods=[checks.PeriodFacts(id=7, name="March 2026", start=None, end=None)],
    )

    assert (finding.ours, finding.ledger, finding.ledger_balance) == (
        D("100.00"), D("100.00"), D("90.00"),
    )  # fmt: skip
    assert finding.amount == D("-10.00")
    assert "ask Gotransverse" in finding.cause


def test_only_our_prefixes_make_a_stray():
    other = _ledger("BILLING-RUN-77", SALE)
    ours = _ledger("ATLAS-PAYMENT-5", SETTLE)

    findings = checks.order_findings(
        journals=[], ledger=[other, ours], atlas_orders={}, control_accounts=CONTROL,
        in_scope=lambda _period: True,
    )  # fmt: skip

    assert [(f.kind, f.reference) for f in findings] == [("stray_transaction", "ATLAS-PAYMENT-5")]


def test_a_stray_we_built_but_never_recorded_as_posted_is_named_as_such():
    ledger = [_ledger("ATLAS-ORDER-3-R1", SALE)]

    (finding,) = checks.order_findings(
        journals=[], ledger=ledger, atlas_orders={}, control_accounts=CONTROL,
        in_scope=lambda _period: True, unposted_references={"ATLAS-ORDER-3-R1": 42},
    )  # fmt: skip

    assert finding.kind == "stray_transaction" and finding.journal_pk == 42
    assert "never recorded it as posted" in finding.cause


def test_zero_amount_entries_kept_by_the_ledger_are_not_an_edit():
    zero = Line(REVENUE, True, D("0.00"), "EUR")
    journal = _journal("ATLAS-ORDER-1-R1", "posting", SALE)
    ledger = [_ledger("ATLAS-ORDER-1-R1", [*SALE, zero])]

    findings = checks.order_findings(
        journals=[journal], ledger=ledger, atlas_orders={}, control_accounts=CONTROL,
        in_scope=lambda _period: True,
    )  # fmt: skip

    assert findings == []
