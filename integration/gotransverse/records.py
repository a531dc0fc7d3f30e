"""Typed AR Ledger records, parsed tolerantly; and the inputs the client sends.

Field names are the spec's (AR Ledger API 3.10), snake_case as on the wire. Unknown fields are
ignored and kept in `raw`; a missing optional field is None; a missing or malformed required
field raises RecordError naming the record, the field and the fix. Amounts are Decimal, read
straight from the JSON text (integration.wire), never through float. Date-times are aware UTC
datetimes (a value without a zone is read as UTC); calendar dates (period and year bounds) are
`date`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Self

from integration import records as shared

ID_TYPE_TRANSACTION_ID = "TRANSACTION_ID"
ID_TYPE_SOURCE_TRANSACTION_REFERENCE = "SOURCE_TRANSACTION_REFERENCE"
ID_TYPES = (ID_TYPE_TRANSACTION_ID, ID_TYPE_SOURCE_TRANSACTION_REFERENCE)


class RecordError(shared.RecordError):
    """One AR Ledger record could not be read. Carries what a person needs to find and fix it."""


class _Reader(shared.FieldReader):
    """Reads the fields of one raw AR Ledger record: fields are optional unless marked required."""

    error = RecordError
    missing_hint = "is missing; the AR Ledger must send it (see the API spec)"

    def int(self, name: str, *, required: bool = False) -> int | None:
        value = self._get(name, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
            raise self.fail(name, f"must be an integer, got {value!r}")
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise self.fail(name, f"must be an integer, got {value!r}") from None
        if not number.is_finite() or number != number.to_integral_value():
            raise self.fail(name, f"must be an integer, got {value!r}")
        return int(number)

    def str(self, name: str, *, required: bool = False) -> str | None:
        value = self._get(name, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.fail(name, f"must be text, got {value!r}")
        text = str(value)
        if required and not text.strip():
            raise self.fail(name, "is empty; the AR Ledger must send a value")
        return text

    def bool(self, name: str, *, required: bool = False) -> bool | None:
        value = self._get(name, required)
        if value is None:
            return None
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise self.fail(name, f"must be true or false, got {value!r}")
        return value

    def decimal(self, name: str, *, required: bool = False) -> Decimal | None:
        value = self._get(name, required)
        return None if value is None else self.to_decimal(name, value)

    def datetime(self, name: str, *, required: bool = False) -> datetime | None:
        value = self._get(name, required)
        if value is None:
            return None
        parsed = parse_datetime(value)
        if parsed is None:
            raise self.fail(name, f"must be an ISO 8601 date-time, got {value!r}")
        return parsed

    def date(self, name: str, *, required: bool = False) -> date | None:
        value = self._get(name, required)
        if value is None:
            return None
        parsed = parse_date(value)
        if parsed is None:
            raise self.fail(name, f"must be an ISO 8601 date, got {value!r}")
        return parsed

    def int_list(self, name: str) -> tuple[int, ...]:
        out = []
        for index, item in enumerate(self.list(name)):
            if isinstance(item, bool) or not isinstance(item, int | str):
                raise self.fail(f"{name}[{index}]", f"must be an integer, got {item!r}")
            try:
                out.append(int(item))
            except ValueError:
                raise self.fail(f"{name}[{index}]", f"must be an integer, got {item!r}") from None
        return tuple(out)

    def str_list(self, name: str) -> tuple[str, ...]:
        return tuple(str(item) for item in self.list(name) if item is not None)

    def mapping(self, name: str) -> Mapping[str, Any] | None:
        value = self.raw.get(name)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self.fail(name, f"must be a JSON object, got {value!r}")
        return value

    def money(self, name: str, *, required: bool = False) -> Money | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self.fail(name, f"must be an object with amount and currency, got {value!r}")
        amount = value.get("amount")
        if amount is None:
            if required:
                raise self.fail(f"{name}.amount", "is missing; the AR Ledger must send it")
            return None
        return Money(
            amount=self.to_decimal(f"{name}.amount", amount),
            currency=None if value.get("currency") is None else str(value["currency"]).upper(),
        )

    def nested(self, name: str, entity_cls: type[Any], **extra: Any) -> tuple[Any, ...]:
        return tuple(
            entity_cls._from_reader(
                _Reader(entity_cls.entity, item, record_id=None), parent=self, **extra
            )
            for item in self.list(name)
        )


def parse_datetime(value: Any) -> datetime | None:
    """An aware UTC datetime from ISO 8601 text ('Z', an offset, no zone = UTC, or a bare date)."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
    else:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_date(value: Any) -> date | None:
    """A calendar date from ISO 8601 text; a date-time keeps its own calendar day."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


# --- records -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Money:
    """The spec's `{"amount": number, "currency": "EUR"}`."""

    amount: Decimal
    currency: str | None


@dataclass(frozen=True, kw_only=True)
class GotransverseRecord:
    """Base of every record: the raw JSON object as received (extra fields included)."""

    entity = "Record"
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, raw: Any) -> Self:
        """Parse one JSON object; raises RecordError for a missing or malformed required field."""
        return cls._from_reader(_Reader(cls.entity, raw))

    @classmethod
    def _from_reader(cls, r: _Reader, **_: Any) -> Self:  # pragma: no cover - overridden
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class AccountingPeriod(GotransverseRecord):
    """One accounting period (usually a month) of a calendar year. `open` False = closed."""

    entity = "AccountingPeriod"
    id: int
    year_id: int | None  # the enclosing accounting year (parent_id when the ledger sends it)
    parent_id: int | None
    name: str | None
    description: str | None
    type: str | None
    path: tuple[int, ...]
    quarter: str | None
    start_date: date
    end_date: date
    time_zone: str | None
    open: bool

    @classmethod
    def _from_reader(cls, r: _Reader, *, year_id: int | None = None, **_: Any) -> Self:
        parent_id = r.int("parent_id")
        return cls(
            id=r.int("id", required=True),
            year_id=year_id if year_id is not None else parent_id,
            parent_id=parent_id,
            name=r.str("name"),
            description=r.str("description"),
            type=r.str("type"),
            path=r.int_list("path"),
            quarter=r.str("quarter"),
            start_date=r.date("start_date", required=True),
            end_date=r.date("end_date", required=True),
            time_zone=r.str("time_zone"),
            open=r.bool("open", required=True),
            raw=r.raw,
        )

    @property
    def is_closed(self) -> bool:
        return not self.open

    def contains(self, day: date | datetime) -> bool:
        """Whether `day` falls in this period (both bounds included, as the ledger shows them)."""
        if isinstance(day, datetime):
            day = day.date()
        return self.start_date <= day <= self.end_date


@dataclass(frozen=True, kw_only=True)
class CalendarYear(GotransverseRecord):
    """An accounting year and its periods (`accounting-periods` on the wire)."""

    entity = "CalendarYear"
    id: int
    name: str | None
    description: str | None
    type: str | None
    path: tuple[int, ...]
    start_date: date
    end_date: date
    time_zone: str | None
    parent_id: int | None
    open: bool | None
    complete: bool | None
    accounting_periods: tuple[AccountingPeriod, ...]

    @classmethod
    def _from_reader(cls, r: _Reader, **_: Any) -> Self:
        year_id = r.int("id", required=True)
        periods = r.nested("accounting-periods", AccountingPeriod, year_id=year_id)
        return cls(
            id=year_id,
            name=r.str("name"),
            description=r.str("description"),
            type=r.str("type"),
            path=r.int_list("path"),
            start_date=r.date("start_date", required=True),
            end_date=r.date("end_date", required=True),
            time_zone=r.str("time_zone"),
            parent_id=r.int("parent_id"),
            open=r.bool("open"),
            complete=r.bool("complete"),
            accounting_periods=periods,
            raw=r.raw,
        )


@dataclass(frozen=True, kw_only=True)
class Calendar(GotransverseRecord):
    """A ledger's accounting calendar (embedded in the ledger)."""

    entity = "Calendar"
    id: int | None
    type: str | None
    path: tuple[int, ...]
    start_date: date | None
    end_date: date | None
    time_zone: str | None
    complete: bool | None
    years: tuple[CalendarYear, ...]

    @classmethod
    def _from_reader(cls, r: _Reader, **_: Any) -> Self:
        return cls(
            id=r.int("id"),
            type=r.str("type"),
            path=r.int_list("path"),
            start_date=r.date("start_date"),
            end_date=r.date("end_date"),
            time_zone=r.str("time_zone"),
            complete=r.bool("complete"),
            years=r.nested("years", CalendarYear),
            raw=r.raw,
        )


@dataclass(frozen=True, kw_only=True)
class Ledger(GotransverseRecord):
    """An AR Ledger. Its currency settings are `convert_currency` / `conversion_currency`."""

    entity = "Ledger"
    id: int
    name: str
    description: str | None
    status: str | None
    timezone_name: str | None
    valid: bool | None
    convert_currency: str | None
    conversion_currency: str | None
    chart_of_account_id: int | None
    chart_of_account_name: str | None
    rule_set_id: int | None
    rule_set_name: str | None
    run_mode_actuals_id: int | None
    conversion_rate_set_id: str | None
    currency_exchange_version: str | None
    billing_account_category_ids: tuple[int, ...]
    expected_customer_lifetime: int | None
    create_zero_amount_entries: bool | None
    accounting_calendar_name: str | None
    calendar: Calendar | None

    @classmethod
    def _from_reader(cls, r: _Reader, **_: Any) -> Self:
        calendar_raw = r.mapping("calendar")
        return cls(
            id=r.int("id", required=True),
            name=r.str("name", required=True),
            description=r.str("description"),
            status=r.str("status"),
            timezone_name=r.str("timezone_name"),
            valid=r.bool("valid"),
            convert_currency=r.str("convert_currency"),
            conversion_currency=r.str("conversion_currency"),
            chart_of_account_id=r.int("chart_of_account_id"),
            chart_of_account_name=r.str("chart_of_account_name"),
            rule_set_id=r.int("rule_set_id"),
            rule_set_name=r.str("rule_set_name"),
            run_mode_actuals_id=r.int("run_mode_actuals_id"),
            conversion_rate_set_id=r.str("conversion_rate_set_id"),
            currency_exchange_version=r.str("currency_exchange_version"),
            billing_account_category_ids=r.int_list("billing_account_category_ids"),
            expected_customer_lifetime=r.int("expected_customer_lifetime"),
            create_zero_amount_entries=r.bool("create_zero_amount_entries"),
            accounting_calendar_name=r.str("accounting_calendar_name"),
            calendar=(
                None
                if calendar_raw is None
                else Calendar._from_reader(_Reader(Calendar.entity, calendar_raw))
            ),
            raw=r.raw,
        )

    @property
    def years(self) -> tuple[CalendarYear, ...]:
        return () if self.calendar is None else self.calendar.years

    @property
    def accounting_periods(self) -> tuple[AccountingPeriod, ...]:
        """Every period of every year, in start-date order."""
        periods = [p for year in self.years for p in year.accounting_periods]
        return tuple(sorted(periods, key=lambda p: (p.start_date, p.id)))

    def period_for(self, day: date | datetime) -> AccountingPeriod | None:
        """The period `day` falls in, or None when the calendar does not cover it."""
        return next((p for p in self.accounting_periods if p.contains(day)), None)


@dataclass(frozen=True, kw_only=True)
class PeriodHistoryEntry(GotransverseRecord):
    """One open/close state of an accounting period and when it held."""

    entity = "PeriodHistoryEntry"
    id: int | None
    open: bool | None
    start_date: datetime | None
    end_date: datetime | None

    @classmethod
    def _from_reader(cls, r: _Reader, **_: Any) -> Self:
        return cls(
            id=r.int("id"),
            open=r.bool("open"),
            start_date=r.datetime("start_date"),
            end_date=r.datetime("end_date"),
            raw=r.raw,
        )


@dataclass(frozen=True, kw_only=True)
class GLAccount(GotransverseRecord):
    """A GL account. The parent/category fields come only inside a chart of accounts."""

    entity = "GLAccount"
    id: int
    number: str
    name: str | None
    description: str | None
    type: str | None
    designation: str | None
    designation_category: str | None
    is_posting_account: bool
    status: str | None
    chart_of_accounts: tuple[int, ...]
    tract_id: int | None
    parent_id: int | None
    parent_number: str | None
    parent_name: str | None
    account_category_id: int | None
    account_category_name: str | None

    @classmethod
    def _from_reader(cls, r: _Reader, **_: Any) -> Self:
        return cls(
            id=r.int("id", required=True),
            number=r.str("number", required=True),
            name=r.str("name"),
            description=r.str("description"),
            type=r.str("type"),
            designation=r.str("designation"),
            designation_category=r.str("designation_category"),
            # Required: whether a journal may post here must never be guessed.
            is_posting_account=r.bool("is_posting_account", required=True),
            status=r.str("status"),
            chart_of_accounts=r.int_list("chart_of_accounts"),
            tract_id=r.int("tract_id"),
            parent_id=r.int("parent_id"),
            parent_number=r.str("parent_number"),
            parent_name=r.str("parent_name"),
            account_category_id=r.int("account_category_id"),
            account_category_name=r.str("account_category_name"),
            raw=r.raw,
        )


@dataclass(frozen=True, kw_only=True)
class AccountDesignation(GotransverseRecord):
    """A GL account designation type (GET /accounts/designations)."""

    entity = "AccountDesignation"
    name: str
    label: str | None
    category: str | None
    type: str | None
    ordinal: int | None

    @classmethod
    def _from_reader(cls, r: _Reader, **_: Any) -> Self:
        return cls(
            name=r.str("name", required=True),
            label=r.str("label"),
            category=r.str("category"),
            type=r.str("type"),
            ordinal=r.int("ordinal"),
            raw=r.raw,
        )


@dataclass(frozen=True, kw_only=True)
class AccountCategory(GotransverseRecord):
    """A GL account category; parent fields come only inside a chart of accounts."""

    entity = "AccountCategory"
    id: int
    name: str | None
    description: str | None
    status: str | None
    type: str | None
    tract_id: int | None
    chart_of_accounts: tuple[int, ...]
    parent_id: int | None
    parent_name: str | None

    @classmethod
    def _from_reader(cls, r: _Reader, **_: Any) -> Self:
        return cls(
            id=r.int("id", required=True),
            name=r.str("name"),
            description=r.str("description"),
            status=r.str("status"),
            type=r.str("type"),
            tract_id=r.int("tract_id"),
            chart_of_accounts=r.int_list("chart_of_accounts"),
            parent_id=r.int("parent_id"),
            parent_name=r.str("parent_name"),
            raw=r.raw,
        )


@dataclass(frozen=True, kw_only=True)
class ChartOfAccounts(GotransverseRecord):
    """A chart of accounts; `accounts` / `account_categories` are empty unless asked for."""

    entity = "ChartOfAccounts"
    id: int
    name: str | None
    description: str | None
    status: str | None
    ledgers: tuple[int, ...]
    accounts: tuple[GLAccount, ...]
    account_categories: tuple[AccountCategory, ...]

    @classmethod
    def _from_reader(cls, r: _Reader, **_: Any) -> Self:
        return cls(
            id=r.int("id", required=True),
            name=r.str("name"),
            description=r.str("description"),
            status=r.str("status"),
            ledgers=r.int_list("ledgers"),
            accounts=r.nested("accounts", GLAccount),
            account_categories=r.nested("account_categories", AccountCategory),
            raw=r.raw,
        )

    def account(self, number: str) -> GLAccount | None:
        return next((a for a in self.accounts if a.number == number), None)


@dataclass(frozen=True, kw_only=True)
class AccountingEntry(GotransverseRecord):
    """One debit or credit line. Draft entries have no `id`, period or `posted_on` yet."""

    entity = "AccountingEntry"
    id: int | None
    tenant_id: int | None
    accounting_period_id: int | None
    occurred_on: datetime | None
    event_date: datetime | None
    posted_on: datetime | None
    credit: bool
    amount: Money
    converted_amount: Money | None
    convert_currency: bool | None
    conversion_rate: Decimal | None
    conversion_date: datetime | None
    charge_category: str | None
    description: str | None
    gl_account_id: int | None
    gl_account_num: str | None
    gl_account_name: str | None
    transaction_id: str | None
    charge_info_type: str | None
    gl_posting_rule: str | None
    gl_posting_rule_name: str | None
    billing_account_num: str | None
    billing_account_name: str | None
    charge_info_id: int | None
    charge_info_state_id: int | None
    gl_run_id: int | None
    ledger_id: int | None
    gl_posting_rule_id: int | None
    gl_run_mode_id: int | None
    gl_run_type: str | None
    is_rev_rec: bool | None
    manual: bool | None
    tract_transaction_id: int | None
    target_batch_key: str | None
    source_batch_reference: str | None
    source_transaction_reference: str | None
    entry_values: Mapping[str, Any] | None

    @classmethod
    def _from_reader(cls, r: _Reader, **_: Any) -> Self:
        return cls(
            id=r.int("id"),
            tenant_id=r.int("tenant_id"),
            accounting_period_id=r.int("accounting_period_id"),
            occurred_on=r.datetime("occurred_on"),
            event_date=r.datetime("event_date"),
            posted_on=r.datetime("posted_on"),
            credit=r.bool("credit", required=True),
            amount=r.money("amount", required=True),
            converted_amount=r.money("converted_amount"),
            convert_currency=r.bool("convert_currency"),
            conversion_rate=r.decimal("conversion_rate"),
            conversion_date=r.datetime("conversion_date"),
            charge_category=r.str("charge_category"),
            description=r.str("description"),
            gl_account_id=r.int("gl_account_id"),
            gl_account_num=r.str("gl_account_num"),
            gl_account_name=r.str("gl_account_name"),
            transaction_id=r.str("transaction_id"),
            charge_info_type=r.str("charge_info_type"),
            gl_posting_rule=r.str("gl_posting_rule"),
            gl_posting_rule_name=r.str("gl_posting_rule_name"),
            billing_account_num=r.str("billing_account_num"),
            billing_account_name=r.str("billing_account_name"),
            charge_info_id=r.int("charge_info_id"),
            charge_info_state_id=r.int("charge_info_state_id"),
            gl_run_id=r.int("gl_run_id"),
            ledger_id=r.int("ledger_id"),
            gl_posting_rule_id=r.int("gl_posting_rule_id"),
            gl_run_mode_id=r.int("gl_run_mode_id"),
            gl_run_type=r.str("gl_run_type"),
            is_rev_rec=r.bool("is_rev_rec"),
            manual=r.bool("manual"),
            tract_transaction_id=r.int("tract_transaction_id"),
            target_batch_key=r.str("target_batch_key"),
            source_batch_reference=r.str("source_batch_reference"),
            source_transaction_reference=r.str("source_transaction_reference"),
            entry_values=r.mapping("entry_values"),
            raw=r.raw,
        )

    @property
    def debit(self) -> bool:
        return not self.credit


def _totals(entries: Iterable[AccountingEntry], *, credit: bool) -> Decimal:
    return sum((e.amount.amount for e in entries if e.credit is credit), Decimal("0"))


@dataclass(frozen=True, kw_only=True)
class AccountingTransaction(GotransverseRecord):
    """A posted (manual or generated) accounting transaction and its entries."""

    entity = "AccountingTransaction"
    id: int
    ledger_id: int | None
    target_batch_key: str | None
    source_batch_reference: str | None
    source_transaction_reference: str | None
    entries: tuple[AccountingEntry, ...]

    @classmethod
    def _from_reader(cls, r: _Reader, **_: Any) -> Self:
        return cls(
            id=r.int("id", required=True),
            ledger_id=r.int("ledger_id"),
            target_batch_key=r.str("target_batch_key"),
            source_batch_reference=r.str("source_batch_reference"),
            source_transaction_reference=r.str("source_transaction_reference"),
            entries=r.nested("entries", AccountingEntry),
            raw=r.raw,
        )

    @property
    def total_debits(self) -> Decimal:
        return _totals(self.entries, credit=False)

    @property
    def total_credits(self) -> Decimal:
        return _totals(self.entries, credit=True)

    @property
    def accounting_period_ids(self) -> frozenset[int]:
        """The period(s) the ledger booked the entries into (after any roll-forward)."""
        return frozenset(
            e.accounting_period_id for e in self.entries if e.accounting_period_id is not None
        )


@dataclass(frozen=True, kw_only=True)
class DraftAccountingTransaction(AccountingTransaction):
    """A draft (not yet posted) accounting transaction; same shape as a posted one."""

    entity = "DraftAccountingTransaction"


@dataclass(frozen=True, kw_only=True)
class Balance(GotransverseRecord):
    """One balance line of GET /ledgers/{ledger_id}/balance."""

    entity = "Balance"
    entity_type: str | None
    gl_account_number: str | None
    gl_account_name: str | None
    billing_account_category_name: str | None
    billing_account_number: str | None
    currency: str | None
    gl_account_category_name: str | None
    gl_account_category_parent_name: str | None
    account_designation_type: str | None
    amounts: tuple[Money, ...]
    converted_amount: Money | None

    @classmethod
    def _from_reader(cls, r: _Reader, **_: Any) -> Self:
        amounts = []
        for index, item in enumerate(r.list("amounts")):
            sub = _Reader(cls.entity, {"amount": item}, record_id=r.record_id)
            money = sub.money("amount", required=True)
            if money is None:  # pragma: no cover - required=True raises first
                raise r.fail(f"amounts[{index}]", "is missing its amount")
            amounts.append(money)
        return cls(
            entity_type=r.str("entity_type"),
            gl_account_number=r.str("gl_account_number"),
            gl_account_name=r.str("gl_account_name"),
            billing_account_category_name=r.str("billing_account_category_name"),
            billing_account_number=r.str("billing_account_number"),
            currency=r.str("currency"),
            gl_account_category_name=r.str("gl_account_category_name"),
            gl_account_category_parent_name=r.str("gl_account_category_parent_name"),
            account_designation_type=r.str("account_designation_type"),
            amounts=tuple(amounts),
            converted_amount=r.money("converted_amount"),
            raw=r.raw,
        )

    def amount_in(self, currency: str) -> Decimal:
        """The balance in one currency (0 when the ledger shows none in it)."""
        return sum(
            (m.amount for m in self.amounts if (m.currency or "").upper() == currency.upper()),
            Decimal("0"),
        )


@dataclass(frozen=True, kw_only=True)
class GLRun(GotransverseRecord):
    """An AR Ledger run (GET /glruns). Status: NOT_STARTED, RUNNING, ERROR, COMPLETE."""

    entity = "GLRun"
    id: int
    date_started: datetime | None
    date_ended: datetime | None
    status: str | None
    num_errors: int | None
    run_trigger_type: str | None
    gl_run_mode_id: int | None
    ledger_id: int | None
    run_to_date: datetime | None

    @classmethod
    def _from_reader(cls, r: _Reader, **_: Any) -> Self:
        return cls(
            id=r.int("id", required=True),
            date_started=r.datetime("date_started"),
            date_ended=r.datetime("date_ended"),
            status=r.str("status"),
            num_errors=r.int("num_errors"),
            run_trigger_type=r.str("run_trigger_type"),
            gl_run_mode_id=r.int("gl_run_mode_id"),
            ledger_id=r.int("ledger_id"),
            run_to_date=r.datetime("run_to_date"),
            raw=r.raw,
        )


@dataclass(frozen=True, kw_only=True)
class CollectorRun(GotransverseRecord):
    """A collector run (GET /collector-runs)."""

    entity = "CollectorRun"
    id: int
    tenant_id: int | None
    gl_run_mode_id: int | None
    date_started: datetime | None
    date_ended: datetime | None
    status: str | None
    run_trigger_type: str | None
    num_errors: int | None
    type: str | None
    collector_operations: tuple[str, ...]
    data_fetch_from_date: datetime | None
    data_fetch_to_date: datetime | None
    overlap_fetch_time: int | None

    @classmethod
    def _from_reader(cls, r: _Reader, **_: Any) -> Self:
        return cls(
            id=r.int("id", required=True),
            tenant_id=r.int("tenant_id"),
            gl_run_mode_id=r.int("gl_run_mode_id"),
            date_started=r.datetime("date_started"),
            date_ended=r.datetime("date_ended"),
            status=r.str("status"),
            run_trigger_type=r.str("run_trigger_type"),
            num_errors=r.int("num_errors"),
            type=r.str("type"),
            collector_operations=r.str_list("collector_operations"),
            data_fetch_from_date=r.datetime("data_fetch_from_date"),
            data_fetch_to_date=r.datetime("data_fetch_to_date"),
            overlap_fetch_time=r.int("overlap_fetch_time"),
            raw=r.raw,
        )


@dataclass(frozen=True, kw_only=True)
class RunError(GotransverseRecord):
    """An error of an AR Ledger run or of a collector run (the spec uses one shape for both)."""

    entity = "RunError"
    id: int | None
    collector_run_id: int | None
    gl_run_id: int | None
    error_message: str | None

    @classmethod
    def _from_reader(cls, r: _Reader, **_: Any) -> Self:
        return cls(
            id=r.int("id"),
            collector_run_id=r.int("collector_run_id"),
            gl_run_id=r.int("gl_run_id"),
            error_message=r.str("error_message"),
            raw=r.raw,
        )


GLRunError = RunError
CollectorRunError = RunError


@dataclass(frozen=True, kw_only=True)
class Collector(GotransverseRecord):
    """A supported collector (GET /collectors)."""

    entity = "Collector"
    name: str
    friendly_name: str | None
    description: str | None
    group: str | None
    category: str | None

    @classmethod
    def _from_reader(cls, r: _Reader, **_: Any) -> Self:
        return cls(
            name=r.str("name", required=True),
            friendly_name=r.str("friendly_name"),
            description=r.str("description"),
            group=r.str("group"),
            category=r.str("category"),
            raw=r.raw,
        )


# --- bulk results ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class BulkTransactionResult:
    """The ledger's answer for ONE input of a bulk call, tied back to that input.

    `index` is the input's position in the list the caller passed; `requested` is what the caller
    sent at that position (the input's source_transaction_reference for a bulk create, the id or
    reference for a bulk post). `succeeded` is True only when the ledger returned an id, no
    error_message and no 4xx/5xx code. `answered` is False when the response held no result
    for this input (outcome unknown: look it up by source_transaction_reference before sending
    it again).
    """

    index: int | None  # None only for an answer the client could not tie to any input
    requested: str | None
    answered: bool
    id: int | None
    source_transaction_reference: str | None
    source_batch_reference: str | None
    target_batch_key: str | None
    code: int | None
    error_message: str | None
    entries: tuple[AccountingEntry, ...]
    raw: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def succeeded(self) -> bool:
        if not self.answered or self.id is None or self.error_message:
            return False
        # The spec does not say which code means success; only an HTTP-like error code
        # (4xx/5xx) is read as failure, so a booked transaction is never mistaken for a
        # failed one (which would invite a second, duplicate post).
        return self.code is None or self.code < 400

    @property
    def failed(self) -> bool:
        return self.answered and not self.succeeded

    @property
    def accounting_period_ids(self) -> frozenset[int]:
        return frozenset(
            e.accounting_period_id for e in self.entries if e.accounting_period_id is not None
        )


@dataclass(frozen=True)
class BulkOutcome(Sequence[BulkTransactionResult]):
    """Every result of one bulk call: `results[i]` answers input i. Never all-or-nothing."""

    results: tuple[BulkTransactionResult, ...]
    # Answers the client could not tie to an input (count or references did not line up).
    unmatched: tuple[BulkTransactionResult, ...] = ()

    def __getitem__(self, index: Any) -> Any:
        return self.results[index]

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Any:
        return iter(self.results)

    @property
    def succeeded(self) -> tuple[BulkTransactionResult, ...]:
        return tuple(r for r in self.results if r.succeeded)

    @property
    def failed(self) -> tuple[BulkTransactionResult, ...]:
        return tuple(r for r in self.results if r.failed)

    @property
    def unanswered(self) -> tuple[BulkTransactionResult, ...]:
        return tuple(r for r in self.results if not r.answered)

    @property
    def all_succeeded(self) -> bool:
        return not self.unmatched and all(r.succeeded for r in self.results)

    def for_reference(self, source_transaction_reference: str) -> tuple[BulkTransactionResult, ...]:
        return tuple(r for r in self.results if r.requested == source_transaction_reference)


# --- inputs (what the client sends) ------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class EntryInput:
    """One debit or credit line to send. Bulk transactions name the account by `gl_account_num`;
    single draft create/update name it by `gl_account_id` (as the spec's bodies do)."""

    credit: bool
    amount: Decimal
    currency: str
    gl_account_num: str | None = None
    gl_account_id: int | None = None
    description: str | None = None
    billing_account_num: str | None = None
    occurred_on: datetime | date | None = None
    event_date: datetime | date | None = None
    converted_amount: Decimal | None = None
    converted_currency: str | None = None
    conversion_date: datetime | date | None = None
    entry_values: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal) or isinstance(self.amount, bool):
            raise TypeError(f"amount must be a Decimal, got {type(self.amount).__name__}")
        if not self.amount.is_finite():
            raise ValueError(f"amount must be finite, got {self.amount}")
        _check_money("amount", self.amount)
        if self.converted_amount is not None:
            if not isinstance(self.converted_amount, Decimal):
                raise TypeError("converted_amount must be a Decimal")
            _check_money("converted_amount", self.converted_amount)
        if not isinstance(self.credit, bool):
            raise TypeError("credit must be True or False")
        if len(self.currency) != 3 or not self.currency.isalpha():
            raise ValueError(f"currency must be an ISO 4217 code, got {self.currency!r}")

    def to_json(self, *, account_by: str) -> dict[str, Any]:
        """The wire object; account_by is "number" (bulk) or "id" (draft create/update)."""
        body: dict[str, Any] = {}
        if account_by == "number":
            if not self.gl_account_num:
                raise ValueError("a bulk transaction entry needs gl_account_num")
            body["gl_account_num"] = self.gl_account_num
        elif account_by == "id":
            if self.gl_account_id is None:
                raise ValueError("a draft transaction entry needs gl_account_id")
            body["gl_account_id"] = self.gl_account_id
        else:  # pragma: no cover - programming error
            raise ValueError(f"account_by must be 'number' or 'id', got {account_by!r}")
        body["credit"] = self.credit
        body["amount"] = {"amount": _wire_money(self.amount), "currency": self.currency.upper()}
        optional = {
            "description": self.description,
            "billing_account_num": self.billing_account_num,
            "occurred_on": _wire_datetime(self.occurred_on),
            "event_date": _wire_datetime(self.event_date),
            "conversion_date": _wire_datetime(self.conversion_date),
            "entry_values": dict(self.entry_values) if self.entry_values is not None else None,
        }
        if self.converted_amount is not None:
            optional["converted_amount"] = {
                "amount": _wire_money(self.converted_amount),
                "currency": (self.converted_currency or self.currency).upper(),
            }
        body.update({k: v for k, v in optional.items() if v is not None})
        return body


@dataclass(frozen=True, kw_only=True)
class TransactionInput:
    """One manual accounting transaction for the bulk endpoint."""

    source_transaction_reference: str | None
    entries: tuple[EntryInput, ...]
    source_batch_reference: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", tuple(self.entries))

    @property
    def total_debits(self) -> Decimal:
        return sum((e.amount for e in self.entries if not e.credit), Decimal("0"))

    @property
    def total_credits(self) -> Decimal:
        return sum((e.amount for e in self.entries if e.credit), Decimal("0"))

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.source_batch_reference is not None:
            body["source_batch_reference"] = self.source_batch_reference
        if self.source_transaction_reference is not None:
            body["source_transaction_reference"] = self.source_transaction_reference
        body["entries"] = [e.to_json(account_by="number") for e in self.entries]
        return body


CENT = Decimal("0.01")


def _check_money(name: str, amount: Decimal) -> None:
    # The side is carried by `credit`, never by the sign (a negative debit would silently become
    # a credit in the ledger); and a third decimal would be rounded by someone we do not control.
    if amount < 0:
        raise ValueError(f"{name} must not be negative (the side is `credit`), got {amount}")
    if amount != amount.quantize(CENT):
        raise ValueError(f"{name} must have at most 2 decimal places, got {amount}")


def _wire_money(amount: Decimal) -> Decimal:
    """Exactly two places on the wire (85500.00, never 8.55E+4 or 85500.0000)."""
    # abs(): only -0 can reach here with a sign (negatives are refused), and "-0.00" is noise.
    return abs(amount).quantize(CENT)


def _wire_datetime(value: datetime | date | None) -> str | None:
    """A body field typed "string (date-time)" in the spec: an RFC 3339 date-time in UTC with
    'Z'. A calendar date is sent as its midnight UTC ("2026-04-15T00:00:00Z"): a bare
    "2026-04-15" is not a date-time, and a strict parser would refuse the whole request."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
