"""Factories for the mirrored Gotransverse reference data and the posting settings."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta

import factory
from django.utils import timezone

from integration import wire
from ledger_sync.models import (
    AccountingPeriod,
    AccountingYear,
    GLAccount,
    Ledger,
    PostingSettings,
    SyncState,
)


class MirroredFactory(factory.django.DjangoModelFactory):
    """Fills the MirroredRecord bookkeeping; raw_json is a small stand-in for the remote JSON."""

    class Meta:
        abstract = True

    raw_json = factory.LazyAttribute(lambda o: wire.dumps({"id": o.gotransverse_id}))
    content_hash = factory.LazyAttribute(lambda o: hashlib.sha256(o.raw_json.encode()).hexdigest())
    first_seen_at = factory.LazyFunction(timezone.now)
    last_seen_at = factory.LazyFunction(timezone.now)
    last_changed_at = factory.LazyFunction(timezone.now)
    sync_state = SyncState.SYNCED


class LedgerFactory(MirroredFactory):
    class Meta:
        model = Ledger
        django_get_or_create = ("gotransverse_id",)

    gotransverse_id = factory.Sequence(lambda n: n + 1)
    name = factory.Sequence(lambda n: f"AR Ledger {n + 1}")
    status = "ACTIVE"
    convert_currency = "GL"
    conversion_currency = "EUR"
    chart_of_account_id = 1
    timezone_name = "UTC"
    create_zero_amount_entries = False


class AccountingYearFactory(MirroredFactory):
    class Meta:
        model = AccountingYear

    ledger = factory.SubFactory(LedgerFactory)
    gotransverse_id = factory.Sequence(lambda n: 1000 + n)
    year = 2026
    name = factory.LazyAttribute(lambda o: f"FY{o.year}")
    start_date = factory.LazyAttribute(lambda o: date(o.year, 1, 1))
    end_date = factory.LazyAttribute(lambda o: date(o.year, 12, 31))
    is_open = True
    is_complete = False


class AccountingPeriodFactory(MirroredFactory):
    class Meta:
        model = AccountingPeriod

    year = factory.SubFactory(AccountingYearFactory)
    ledger = factory.SelfAttribute("year.ledger")
    gotransverse_id = factory.Sequence(lambda n: 10_000 + n)
    start_date = date(2026, 1, 1)
    end_date = factory.LazyAttribute(
        lambda o: (
            (o.start_date.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        )
    )
    name = factory.LazyAttribute(lambda o: f"{o.start_date:%b %Y}")
    is_open = True
    status = factory.LazyAttribute(lambda o: "OPEN" if o.is_open else "CLOSED")


def monthly_periods(
    *, ledger: Ledger, year: int, closed_months: tuple[int, ...] = ()
) -> list[AccountingPeriod]:
    """A year with twelve monthly periods, the given months closed."""
    accounting_year = AccountingYearFactory(ledger=ledger, year=year)
    return [
        AccountingPeriodFactory(
            year=accounting_year,
            start_date=date(year, month, 1),
            is_open=month not in closed_months,
        )
        for month in range(1, 13)
    ]


class GLAccountFactory(MirroredFactory):
    class Meta:
        model = GLAccount

    gotransverse_id = factory.Sequence(lambda n: 500 + n)
    number = factory.Sequence(lambda n: str(7000 + n))
    name = factory.Sequence(lambda n: f"Account {n}")
    type = "ASSET"
    designation = "CASH"
    designation_category = "ASSET"
    is_posting_account = True
    status = "ACTIVE"


def sandbox_chart() -> dict[str, GLAccount]:
    """The sandbox chart (integration/sandbox/chart.py) as mirrored GL accounts, by number."""
    from integration.sandbox.chart import LEDGER_ACCOUNTS

    return {
        account.number: GLAccountFactory(
            number=account.number,
            name=account.name,
            type=account.type,
            designation=account.designation,
            is_posting_account=account.is_posting_account,
        )
        for account in LEDGER_ACCOUNTS
    }


class PostingSettingsFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PostingSettings
        django_get_or_create = ("id",)

    id = PostingSettings.SINGLETON_PK
    receivables_account = "1200"
    payables_account = "2000"
    output_vat_account = "2200"
    input_vat_account = "1400"
    bank_account = "1000"
    journal_workflow = "review"
    closed_period_policy = "block"
