"""Reconciliation over both sandboxes, after a real cycle: a clean cycle reconciles to zero
differences at all three levels, each tampering is reported once, with its figures, and an
accepted payment is a difference only until its settlement transaction is in the ledger."""

from __future__ import annotations

import contextlib
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from integration.sandbox.faults import FaultConfig
from ledger_sync.models import (
    Invoice,
    Journal,
    PaymentConfirmation,
    Problem,
    ReconciliationDifference,
    ReconciliationRun,
    WriteBackStep,
)
from ledger_sync.services.journal_corrections import journal_reverse
from ledger_sync.services.posting import journal_approve
from ledger_sync.services.reconciliation import reconciliation_run
from ledger_sync.services.sweep import inbound_sweep
from ledger_sync.services.writeback import write_backs_run
from tests.factories.parties import accountant
from tests.fixtures.atlas_sandbox import SANDBOX_PASSWORD, SANDBOX_USERNAME

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal
TRIGGER_STATUS = "Approved order by ETRM"


@pytest.fixture
def cycled(make_atlas_sandbox, gotransverse_sandbox, settings):
    """40 ATLAS orders, every unprocessed one in the trigger status, cycled once: posted,
    written back (erpCode, invoice)."""
    atlas_sandbox = _cycle_once(make_atlas_sandbox, settings, workflow="auto")
    assert Journal.objects.filter(status=Journal.Status.POSTED).count() >= 3
    return atlas_sandbox, gotransverse_sandbox


@pytest.fixture
def reviewed(make_atlas_sandbox, gotransverse_sandbox, settings):
    """The same 40 orders cycled once under the review workflow: drafts awaiting review."""
    atlas_sandbox = _cycle_once(make_atlas_sandbox, settings, workflow="review")
    assert Journal.objects.filter(status=Journal.Status.DRAFT).count() >= 3
    return atlas_sandbox, gotransverse_sandbox


def _cycle_once(make_atlas_sandbox, settings, *, workflow: str):
    atlas_sandbox = make_atlas_sandbox(orders=40, rate_limit_per_minute=None)
    settings.ATLAS_BASE_URL = atlas_sandbox.url
    settings.ATLAS_USERNAME = SANDBOX_USERNAME
    settings.ATLAS_PASSWORD = SANDBOX_PASSWORD
    settings.JOURNAL_WORKFLOW = workflow
    settings.ATLAS_MAX_RETRIES = 0
    settings.GOTRANSVERSE_MAX_RETRIES = 0
    dataset = atlas_sandbox.app.dataset
    for counterparty in dataset.counterparties.values():
        counterparty["externalId"] = counterparty["externalId"] or f"CUST-{counterparty['id']:04d}"
    for order in dataset.orders.values():
        if order["erpCode"] is None:
            order["status"] = TRIGGER_STATUS
    # The seed's deliberately broken orders are blocked (exit 1); the rest is journalled.
    with contextlib.suppress(CommandError):
        call_command("run_cycle", stdout=io.StringIO(), stderr=io.StringIO())
    return atlas_sandbox


def differences(run: ReconciliationRun, level: int | None = None) -> list[ReconciliationDifference]:
    rows = run.differences.all()
    if level is not None:
        rows = rows.filter(level=level)
    return list(rows)


def test_a_clean_cycle_reconciles_to_zero_differences_at_all_three_levels(cycled):
    run = reconciliation_run(trigger="test")

    assert run.status == ReconciliationRun.Status.DONE, run.error
    assert differences(run) == []
    assert run.difference_count == 0
    posted = Journal.objects.filter(status=Journal.Status.POSTED).count()
    assert run.orders_checked == posted
    assert run.accounts_checked > 0 and run.counterparties_checked > 0
    assert run.ledger_transactions_read == posted


# --- helpers -------------------------------------------------------------------------------


def posted_journal(*, with_control_debit: bool = True) -> Journal:
    """A posted journal whose first line is a debit on the receivables account (an Active
    order), so that figures are easy to state."""
    from ledger_sync.models import PostingSettings

    receivables = PostingSettings.load().receivables_account
    for journal in Journal.objects.filter(status=Journal.Status.POSTED).order_by("pk"):
        lines = list(journal.lines.order_by("position"))
        if lines[0].gl_account == receivables and lines[0].side == "debit":
            return journal
    raise AssertionError("no posted journal debiting receivables")


def signed(line) -> Decimal:
    return line.amount if line.side == "debit" else -line.amount


def by_kind(run: ReconciliationRun, level: int) -> dict[str, list[ReconciliationDifference]]:
    found: dict[str, list[ReconciliationDifference]] = {}
    for row in differences(run, level):
        found.setdefault(row.kind, []).append(row)
    return found


def account_effects(journal: Journal, sign: int = 1) -> dict[str, Decimal]:
    """Per GL account: what the journal's lines move (debit-positive), times sign."""
    effects: dict[str, Decimal] = {}
    for line in journal.lines.all():
        effects[line.gl_account] = effects.get(line.gl_account, D("0")) + sign * signed(line)
    return {account: amount for account, amount in effects.items() if amount}


def control_effect(journal: Journal) -> tuple[str, Decimal]:
    from ledger_sync.models import PostingSettings

    row = PostingSettings.load()
    control = {row.receivables_account, row.payables_account}
    lines = [line for line in journal.lines.all() if line.gl_account in control]
    return lines[0].billing_account_num, sum((signed(line) for line in lines), D("0"))


def assert_level2(run: ReconciliationRun, expected: dict[str, Decimal]) -> None:
    rows = differences(run, 2)
    assert {r.gl_account: r.amount for r in rows} == expected
    for row in rows:
        assert row.kind == "account_balance"
        assert row.ledger_amount - row.ours_amount == expected[row.gl_account]
        assert row.ledger_balance_amount == row.ledger_amount  # the ledger agrees with itself
        assert "Explained by the level-1 differences" in row.likely_cause


def assert_level3(run: ReconciliationRun, code: str, amount: Decimal) -> None:
    (row,) = differences(run, 3)
    assert row.kind == "counterparty_balance" and row.billing_account_num == code
    assert row.ledger_amount - row.ours_amount == amount == row.amount
    assert row.atlas_amount == row.ours_amount  # ATLAS and we still agree
    assert row.counterparty_id is not None and row.fix_url.endswith(
        f"/counterparty/{row.counterparty_id}/change/"
    )


# --- each tampering ------------------------------------------------------------------------


def test_an_order_changed_in_atlas_after_posting_is_reported_once_with_both_totals(cycled):
    atlas, _ledger = cycled
    journal = posted_journal()
    order = journal.order_sync.order
    items = [i for i in atlas.app.dataset.order_items.values() if i["orderId"] == order.atlas_id]
    item = next(i for i in items if i["status"] == 2)
    total_before = D(str(atlas.app.dataset.orders[order.atlas_id]["totalAmount"]))
    atlas.app.tamper_order(
        order.atlas_id, item_id=item["id"], net_amount=D(str(item["netAmount"])) + D("100.00")
    )

    run = reconciliation_run(trigger="test")

    (row,) = differences(run)
    assert row.level == 1 and row.kind == "order_changed_after_posting"
    assert row.atlas_amount == total_before + D("100.00")
    assert row.ours_amount == total_before == row.ledger_amount
    assert row.amount == D("100.00")
    assert row.order_id == order.pk and row.journal_id == journal.pk
    assert row.fix_url.endswith(f"/order/{order.pk}/change/")
    assert row.details["items"] == [
        {
            "item": item["id"],
            "posted": str(D(str(item["netAmount"])) - D("100.00") + D(str(item["vatAmount"]))),
            "atlas_now": str(D(str(item["netAmount"])) + D(str(item["vatAmount"]))),
        }
    ]
    assert f"item {item['id']}" in row.likely_cause


def test_a_stray_transaction_with_our_prefix_is_reported_once_at_each_level(cycled):
    _atlas, ledger = cycled
    journal = posted_journal()
    first, *_ = journal.lines.order_by("position")
    credit = journal.lines.filter(side="credit").exclude(gl_account=first.gl_account).first()
    day = journal.occurred_on.isoformat() + "T00:00:00Z"
    stray = ledger.app.tamper_add_transaction(
        source_transaction_reference="ATLAS-ORDER-999999-R1",
        entries=[
            {
                "gl_account_num": first.gl_account,
                "credit": False,
                "amount": {"amount": "250.00", "currency": journal.currency},
                "billing_account_num": first.billing_account_num,
                "occurred_on": day,
            },
            {
                "gl_account_num": credit.gl_account,
                "credit": True,
                "amount": {"amount": "250.00", "currency": journal.currency},
                "billing_account_num": first.billing_account_num,
                "occurred_on": day,
            },
        ],
    )

    run = reconciliation_run(trigger="test")

    (row,) = differences(run, 1)
    assert row.kind == "stray_transaction"
    assert row.ours_amount is None and row.ledger_amount == row.amount == D("250.00")
    assert row.ledger_transaction_ids == [stray.id]
    assert row.source_transaction_reference == "ATLAS-ORDER-999999-R1"
    assert "never posted it" in row.likely_cause
    assert_level2(run, {first.gl_account: D("250.00"), credit.gl_account: D("-250.00")})
    assert_level3(run, first.billing_account_num, D("250.00"))


def test_a_transaction_dropped_from_the_ledger_is_reported_as_missing(cycled):
    _atlas, ledger = cycled
    journal = posted_journal()
    ledger.app.tamper_drop_transaction(int(journal.ledger_transaction_id))

    run = reconciliation_run(trigger="test")

    (row,) = differences(run, 1)
    assert row.kind == "missing_in_ledger" and row.journal_id == journal.pk
    assert row.ours_amount == journal.total_debit and row.ledger_amount == D("0.00")
    assert row.amount == -journal.total_debit
    assert row.fix_url.endswith(f"/journal/{journal.pk}/change/")
    assert_level2(run, account_effects(journal, sign=-1))
    code, control = control_effect(journal)
    assert_level3(run, code, -control)


def test_a_posted_transaction_edited_behind_the_api_is_reported_with_the_changed_entry(cycled):
    _atlas, ledger = cycled
    journal = posted_journal()
    stored = ledger.app.transaction(int(journal.ledger_transaction_id))
    index = next(i for i, e in enumerate(stored.entries) if e.credit)
    entry = stored.entries[index]
    ledger.app.tamper_edit_entry(stored.id, entry_index=index, amount=entry.amount + D("10.00"))

    run = reconciliation_run(trigger="test")

    (row,) = differences(run, 1)
    assert row.kind == "ledger_transaction_edited" and row.journal_id == journal.pk
    assert row.amount == D("10.00")  # the credits grew by 10.00; the debits did not move
    assert row.ours_amount == row.ledger_amount == journal.total_debit
    assert row.ledger_transaction_ids == [stored.id]
    assert len(row.details["ours_not_in_ledger"]) == len(row.details["ledger_not_ours"]) == 1
    assert_level2(run, {entry.gl_account_num: D("-10.00")})
    assert differences(run, 3) == []  # a revenue/VAT entry: no receivable moved


def test_a_transaction_duplicated_under_our_reference_is_reported_once(cycled):
    _atlas, ledger = cycled
    journal = posted_journal()
    copy = ledger.app.tamper_duplicate_transaction(int(journal.ledger_transaction_id))

    run = reconciliation_run(trigger="test")

    (row,) = differences(run, 1)
    assert row.kind == "duplicate_reference"
    assert row.ours_amount == journal.total_debit
    assert row.ledger_amount == 2 * journal.total_debit and row.amount == journal.total_debit
    assert row.ledger_transaction_ids == [int(journal.ledger_transaction_id), copy.id]
    assert_level2(run, account_effects(journal))
    code, control = control_effect(journal)
    assert_level3(run, code, control)


# --- runs, keys, scope, calls --------------------------------------------------------------


def test_the_same_difference_keeps_its_key_in_the_next_run_and_a_clean_run_is_recorded(cycled):
    _atlas, ledger = cycled
    journal = posted_journal()
    clean = reconciliation_run(trigger="test")
    copy = ledger.app.tamper_duplicate_transaction(int(journal.ledger_transaction_id))

    first = reconciliation_run(trigger="test")
    second = reconciliation_run(trigger="test", mirror_atlas=False)

    assert clean.status == "done" and clean.difference_count == 0
    keys = sorted(first.differences.values_list("key", flat=True))
    assert keys == sorted(second.differences.values_list("key", flat=True))
    assert f"journal:{journal.source_transaction_reference}:duplicate" in keys
    assert second.atlas_calls == 0
    ledger.app.tamper_drop_transaction(copy.id)
    assert reconciliation_run(trigger="test").difference_count == 0


def test_ledger_reads_are_paged_and_one_balance_call_per_period(cycled):
    _atlas, ledger = cycled
    ledger.app.reset_calls()

    run = reconciliation_run(trigger="test", mirror_atlas=False)

    path = f"/ledgers/{ledger.ledger_id}"
    listing = ledger.app.calls_to(f"{path}/accounting-transactions", "GET")
    balance = ledger.app.calls_to(f"{path}/balance", "GET")
    assert len(listing) == -(-run.ledger_transactions_read // 50)
    assert all(c.query["page_size"] == "50" for c in listing)
    periods = {p for t in ledger.app.posted_transactions() for p in [t.posted_period_id]}
    assert len(balance) == len(periods)
    assert run.ledger_calls == len(listing) + len(balance) == len(ledger.app.calls)
    assert not ledger.app.calls_to(f"{path}/accounting-entries", "GET")  # never per order


def test_a_period_run_compares_that_period_only(cycled):
    _atlas, ledger = cycled
    journal = posted_journal()
    stored = ledger.app.transaction(int(journal.ledger_transaction_id))
    period = ledger.app.period(stored.posted_period_id)
    month = period.start_date.strftime("%Y-%m")
    later = next(p for p in ledger.app.periods if p.start_date > period.end_date)
    ledger.app.tamper_drop_transaction(stored.id)
    ledger.app.reset_calls()

    this_month = reconciliation_run(trigger="test", period=month)
    other_month = reconciliation_run(
        trigger="test", period=later.start_date.strftime("%Y-%m"), mirror_atlas=False
    )

    assert this_month.period == month
    assert [r.kind for r in differences(this_month, 1)] == ["missing_in_ledger"]
    assert {r.period for r in differences(this_month, 2)} == {period.name}
    listing = ledger.app.calls_to(f"/ledgers/{ledger.ledger_id}/accounting-transactions")
    assert listing
    assert listing[0].query["accounting_period_to"].startswith(period.end_date.isoformat())
    assert differences(other_month, 1) == [] and differences(other_month, 2) == []
    # Level 3 is cumulative to the period's end: the missing receivable still shows.
    assert [r.kind for r in differences(other_month, 3)] == ["counterparty_balance"]


def test_a_bad_period_is_refused_naming_the_format(cycled):
    from ledger_sync.services.reconciliation import ReconciliationPeriodInvalid

    with pytest.raises(ReconciliationPeriodInvalid, match="YYYY-MM"):
        reconciliation_run(trigger="test", period="2026-13")
    with pytest.raises(ReconciliationPeriodInvalid, match="no accounting period"):
        reconciliation_run(trigger="test", period="1999-01")
    assert not ReconciliationRun.objects.exists()


def test_a_ledger_outage_is_recorded_on_a_failed_run(cycled):
    _atlas, ledger = cycled
    ledger.app.faults.update(error_rate=1.0)

    run = reconciliation_run(trigger="test", mirror_atlas=False)

    assert run.status == ReconciliationRun.Status.FAILED
    assert "503" in run.error or "unavailable" in run.error.lower()
    assert run.differences.count() == 0 and run.ledger_calls >= 1


def test_the_command_exits_0_when_clean_and_1_with_the_differences_listed(cycled):
    _atlas, ledger = cycled
    out = io.StringIO()
    call_command("reconcile", stdout=out)
    assert "0 differences" in out.getvalue()

    journal = posted_journal()
    ledger.app.tamper_drop_transaction(int(journal.ledger_transaction_id))
    out = io.StringIO()
    with pytest.raises(CommandError, match="difference"):
        call_command("reconcile", "--no-mirror", stdout=out)
    assert f"L1 missing_in_ledger {journal.source_transaction_reference}" in out.getvalue()
    with pytest.raises(CommandError, match="YYYY-MM"):
        call_command("reconcile", "--period", "March", stdout=io.StringIO())


def test_the_sandboxes_tamper_over_their_control_endpoints(cycled):
    import requests

    atlas, ledger = cycled
    journal = posted_journal()
    answer = requests.post(
        f"{ledger.url}/_sandbox/tamper",
        json={"action": "duplicate", "transaction_id": int(journal.ledger_transaction_id)},
        timeout=5,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["source_transaction_reference"] == journal.source_transaction_reference
    refused = requests.post(f"{ledger.url}/_sandbox/tamper", json={"action": "?"}, timeout=5)
    assert refused.status_code == 400 and "action must be" in refused.text
    order_id = journal.order_sync.order.atlas_id
    answer = requests.post(
        f"{atlas.url}/_sandbox/tamper", json={"orderId": order_id, "totalAmount": "1.00"}, timeout=5
    )
    assert answer.status_code == 200 and D(str(answer.json()["order"]["totalAmount"])) == 1

    run = reconciliation_run(trigger="test")

    assert {r.kind for r in differences(run, 1)} == {
        "duplicate_reference",
        "order_changed_after_posting",
    }


def test_the_scheduled_task_records_a_run_with_its_trigger(cycled):
    from ledger_sync.tasks import reconcile_task

    run = ReconciliationRun.objects.get(pk=reconcile_task())

    assert run.trigger == "schedule" and run.status == "done" and run.difference_count == 0


def test_a_journal_posted_while_the_ledger_was_read_is_left_to_the_next_run(cycled):
    from datetime import timedelta

    from django.utils import timezone

    _atlas, ledger = cycled
    journal = posted_journal()
    # Recorded as posted after the listing started: the listing may or may not hold it.
    Journal.objects.filter(pk=journal.pk).update(posted_at=timezone.now() + timedelta(hours=1))
    ledger.app.tamper_drop_transaction(int(journal.ledger_transaction_id))

    run = reconciliation_run(trigger="test")

    assert differences(run) == []
    Journal.objects.filter(pk=journal.pk).update(posted_at=timezone.now() - timedelta(hours=1))
    later = reconciliation_run(trigger="test", mirror_atlas=False)
    assert [r.kind for r in differences(later, 1)] == ["missing_in_ledger"]


def test_differences_reach_the_error_queue_fold_on_repeat_and_resolve_when_clean(cycled):
    _atlas, ledger = cycled
    journal = posted_journal()
    copy = ledger.app.tamper_duplicate_transaction(int(journal.ledger_transaction_id))
    duplicate_key = f"reconciliation:journal:{journal.source_transaction_reference}:duplicate"

    first = reconciliation_run(trigger="test")
    reconciliation_run(trigger="test", mirror_atlas=False)

    queued = Problem.objects.filter(kind=Problem.Kind.RECONCILIATION)
    assert queued.count() == first.difference_count > 0
    duplicate = queued.get(key=duplicate_key)
    assert duplicate.count == 2 and duplicate.status == Problem.Status.OPEN
    assert duplicate.fix_url == first.differences.get(key=duplicate_key[15:]).fix_url

    ledger.app.tamper_drop_transaction(copy.id)
    assert reconciliation_run(trigger="test").difference_count == 0
    assert not queued.filter(status=Problem.Status.OPEN).exists()
    assert queued.get(key=duplicate_key).status == Problem.Status.RESOLVED


# --- payments and their settlements --------------------------------------------------------


def test_an_accepted_payment_is_reported_until_its_settlement_is_in_the_ledger(payment_case):
    order = payment_case.case.receivable
    ledger = payment_case.ledger.app
    ledger.faults = FaultConfig(error_rate=1.0, error_statuses=(503,))
    payment_case.pay(payment_case.body(order, order.payments[0]))
    assert PaymentConfirmation.objects.get().ledger_state == "failed"
    ledger.faults = FaultConfig()

    unsettled = reconciliation_run(trigger="test")

    assert unsettled.status == ReconciliationRun.Status.DONE, unsettled.error
    (row,) = [r for r in differences(unsettled, 3) if r.billing_account_num == order.erp_code]
    assert row.kind == "counterparty_balance"
    # ATLAS and we agree the customer owes 6,900.00; the ledger still shows 11,900.00.
    assert (row.atlas_amount, row.ours_amount, row.ledger_amount) == (
        D("6900.00"),
        D("6900.00"),
        D("11900.00"),
    )
    assert "5,000.00 EUR of payments we accepted have no settlement transaction" in (
        row.likely_cause
    )

    inbound_sweep(now=timezone.now() + timedelta(minutes=20))
    assert PaymentConfirmation.objects.get().ledger_state == "posted"
    settled = reconciliation_run(trigger="test")

    assert settled.status == ReconciliationRun.Status.DONE, settled.error
    assert differences(settled) == []


# --- posted, with the write-backs to ATLAS still to do -------------------------------------


def test_approved_drafts_whose_write_backs_are_queued_reconcile_clean(reviewed):
    """The approval posts; ATLAS learns the invoice from the write-back that follows (the
    approval's task, or the next cycle). In between, ATLAS holds no invoice: that is the order
    on its way, not a difference (the README's screenshot reconciles right then)."""
    drafts = list(Journal.objects.filter(status=Journal.Status.DRAFT).order_by("pk"))
    approved = journal_approve(journals=drafts, user=accountant())
    assert approved.posted == len(drafts)
    assert not Invoice.objects.filter(order__sync__journals__in=drafts).exists()
    queued = WriteBackStep.objects.filter(kind=WriteBackStep.Kind.INVOICE)
    assert {step.status for step in queued} == {WriteBackStep.Status.PENDING}

    run = reconciliation_run(trigger="test")

    assert run.status == ReconciliationRun.Status.DONE, run.error
    assert differences(run) == []
    assert run.orders_checked == len(drafts) and run.counterparties_checked > 0


def test_a_failed_write_back_is_a_counterparty_difference_naming_the_order_and_the_fix(reviewed):
    atlas, _ledger = reviewed
    drafts = list(Journal.objects.filter(status=Journal.Status.DRAFT).order_by("pk"))
    journal_approve(journals=drafts, user=accountant())
    atlas.app.faults.update(error_rate=1.0)
    assert write_backs_run().failed
    atlas.app.faults.update(error_rate=0.0)  # ATLAS is back; the steps wait for their retry
    orders = [j.order_sync.order for j in drafts]
    open_items: dict[str, Decimal] = {}
    for journal in drafts:
        code, amount = control_effect(journal)
        open_items[code] = open_items.get(code, D("0.00")) + amount

    run = reconciliation_run(trigger="test")

    assert run.status == ReconciliationRun.Status.DONE, run.error
    assert differences(run, 1) == [] and differences(run, 2) == []
    rows = differences(run, 3)
    assert {row.billing_account_num: row.ours_amount for row in rows} == {
        code: amount for code, amount in open_items.items() if amount
    }
    for row in rows:
        # ATLAS has no invoice for these orders; we and the ledger hold the open items.
        assert row.atlas_amount == D("0.00") and row.ours_amount == row.ledger_amount
        assert row.amount == -row.ours_amount
        assert "ATLAS does not hold the invoice of Order " in row.likely_cause
        assert "write-back ERP document code (Order/Post) failed after 1 attempt(s)" in (
            row.likely_cause
        )
        assert "retry the write-back" in row.likely_cause
    cited = " ".join(row.likely_cause for row in rows)
    assert all(f"Order {order.atlas_id}" in cited for order in orders)

    write_backs_run(now=timezone.now() + timedelta(days=1))  # past the retry's backoff
    retried = reconciliation_run(trigger="test")

    assert retried.status == ReconciliationRun.Status.DONE, retried.error
    assert differences(retried) == []


def test_a_posting_reversed_before_its_invoice_was_written_back_expects_no_invoice(reviewed):
    drafts = list(Journal.objects.filter(status=Journal.Status.DRAFT).order_by("pk"))
    reviewer = accountant()
    journal_approve(journals=drafts, user=reviewer)
    reversed_journal = posted_journal()
    journal_reverse(journal=reversed_journal, user=reviewer, reason="wrong counterparty")
    # The order nets to zero with us and in the ledger, and ATLAS never got its invoice.
    assert not Invoice.objects.filter(order__sync=reversed_journal.order_sync).exists()

    run = reconciliation_run(trigger="test")

    assert run.status == ReconciliationRun.Status.DONE, run.error
    assert differences(run) == []


def test_an_invoice_written_after_the_mirror_pass_is_named_when_reconciled_without_one(reviewed):
    drafts = list(Journal.objects.filter(status=Journal.Status.DRAFT).order_by("pk"))
    journal_approve(journals=drafts, user=accountant())
    written = write_backs_run()
    assert written.invoices_created >= 3 and not written.failed
    invoiced = WriteBackStep.objects.filter(
        kind=WriteBackStep.Kind.INVOICE, status=WriteBackStep.Status.DONE
    ).select_related("order_sync__order")

    stale = reconciliation_run(trigger="test", mirror_atlas=False)

    assert stale.status == ReconciliationRun.Status.DONE, stale.error
    rows = differences(stale)
    assert rows and {row.level for row in rows} == {3}
    cited = " ".join(row.likely_cause for row in rows)
    for step in invoiced:
        order = step.order_sync.order
        assert f"Order {order.atlas_id} {order.document_reference}" in cited
    for row in rows:
        assert row.atlas_amount == D("0.00") and row.ours_amount == row.ledger_amount
        assert "after the last ATLAS mirror pass" in row.likely_cause
        assert "reconcile with a fresh mirror pass (without --no-mirror)" in row.likely_cause
        assert row.details["invoices_not_mirrored"]

    fresh = reconciliation_run(trigger="test")

    assert fresh.status == ReconciliationRun.Status.DONE, fresh.error
    assert differences(fresh) == []
