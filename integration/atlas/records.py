"""Typed ATLAS records, parsed tolerantly from the response envelope.

Shapes follow ../shared/CONTRACT.md. Unknown fields are ignored (and kept in `raw`); a missing
optional field is None; a missing or malformed required field raises RecordError naming the
record, the field and the fix, so that one bad record fails alone and the rest of a pass goes on.
Amounts are Decimal, read straight from the JSON text (see integration.wire), never via float.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Generic, Self, TypeVar

from integration import records as shared
from integration.wire import canonical

ITEM_STATUS_CALCULATED = 0
ITEM_STATUS_EDITED = 1
ITEM_STATUS_IN_ORDER = 2
CASHFLOW_ACTIVE = 0
CASHFLOW_PASSIVE = 1


class RecordError(shared.RecordError):
    """One ATLAS record could not be read. Carries what a person needs to find and fix it."""


class _Reader(shared.FieldReader):
    """Reads fields of one raw ATLAS record: fields are required unless marked optional."""

    error = RecordError
    missing_hint = "is missing; ATLAS must send it for every record"

    def identify(self, raw_id: Any, fallback: Any) -> Any:
        # Only a real integer is an ATLAS id worth naming in an error.
        return raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else None

    def int(self, name: str, *, required: bool = True) -> int | None:
        value = self._get(name, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
            raise self.fail(name, f"must be an integer, got {value!r}")
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise self.fail(name, f"must be an integer, got {value!r}") from None
        if number != number.to_integral_value():
            raise self.fail(name, f"must be an integer, got {value!r}")
        return int(number)

    def str(self, name: str, *, required: bool = True) -> str | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(name, f"must be text, got {value!r}")
        if required and not value.strip():
            raise self.fail(name, "is empty; ATLAS must send a value")
        return value

    def decimal(self, name: str, *, required: bool = True) -> Decimal | None:
        value = self._get(name, required)
        return None if value is None else self.to_decimal(name, value)

    def bool(self, name: str, *, required: bool = True, default: bool | None = None) -> bool | None:
        value = self.raw.get(name)
        if value is None:
            if default is not None:
                return default
            if required:
                raise self.fail(name, "is missing; ATLAS must send true or false")
            return None
        if not isinstance(value, bool):
            raise self.fail(name, f"must be true or false, got {value!r}")
        return value

    def datetime(self, name: str, *, required: bool = True) -> datetime | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(name, f"must be an ISO 8601 date, got {value!r}")
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise self.fail(name, f"must be an ISO 8601 date, got {value!r}") from None
        # ATLAS dates carry no zone: they are UTC.
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)

    def int_list(self, name: str) -> tuple[int, ...]:
        value = self.raw.get(name)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise self.fail(name, f"must be a list of integers, got {value!r}")
        return tuple(value)


@dataclass(frozen=True, kw_only=True)
class AtlasRecord:
    """Base of every record: the ATLAS id and the raw JSON object as received."""

    entity = "Record"
    id: int
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, raw: Any) -> Self:
        reader = _Reader(cls.entity, raw)
        return cls._parse(reader)

    @classmethod
    def _parse(cls, r: _Reader) -> Self:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    @property
    def content_hash(self) -> str:
        """SHA-256 of the canonical raw JSON: equal hashes mean nothing changed in ATLAS."""
        import hashlib

        return hashlib.sha256(canonical(self.raw).encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class CustomFieldType(AtlasRecord):
    entity = "CustomFieldType"
    name: str

    @classmethod
    def _parse(cls, r: _Reader) -> Self:
        return cls(id=r.int("id"), name=r.str("name"), raw=r.raw)


@dataclass(frozen=True, kw_only=True)
class CustomFieldDefinition(AtlasRecord):
    entity = "CustomFieldDefinition"
    name: str
    type: str | None
    is_required: bool
    counterparty_type_ids: tuple[int, ...]
    options: tuple[Any, ...]

    @classmethod
    def _parse(cls, r: _Reader) -> Self:
        return cls(
            id=r.int("id"),
            name=r.str("name"),
            type=r.str("type", required=False),
            is_required=r.bool("isRequired", default=False),
            counterparty_type_ids=r.int_list("counterpartyTypeIds"),
            options=tuple(r.list("options")),
            raw=r.raw,
        )


@dataclass(frozen=True, kw_only=True)
class CustomFieldValue:
    custom_field_id: int
    name: str | None
    value: Any


@dataclass(frozen=True, kw_only=True)
class Counterparty(AtlasRecord):
    entity = "Counterparty"
    name: str
    legal_name: str | None
    external_id: str | None
    counterparty_type_id: int | None
    vat: str | None
    gl_account: str | None
    # Never in repr (logs, tracebacks, admin messages): a full IBAN is personal data.
    iban: str | None = field(repr=False)
    swift_bic: str | None
    self_billing: bool
    custom_field_values: tuple[CustomFieldValue, ...]

    @classmethod
    def _parse(cls, r: _Reader) -> Self:
        values = []
        for index, item in enumerate(r.list("customFieldValues")):
            if not isinstance(item, Mapping):
                # Checked here so the error names this counterparty, not "(no id)".
                raise r.fail(f"customFieldValues[{index}]", f"must be an object, got {item!r}")
            sub = _Reader(cls.entity, item)
            sub.record_id = r.record_id
            try:
                field_id = sub.int("customFieldId")
            except RecordError:
                raise r.fail(
                    f"customFieldValues[{index}].customFieldId", "is missing or not an integer"
                ) from None
            values.append(
                CustomFieldValue(
                    custom_field_id=field_id,
                    name=sub.str("name", required=False) if isinstance(item, Mapping) else None,
                    value=item.get("value"),
                )
            )
        return cls(
            id=r.int("id"),
            name=r.str("name"),
            legal_name=r.str("legalName", required=False),
            external_id=r.str("externalId", required=False) or None,
            counterparty_type_id=r.int("counterpartyTypeId", required=False),
            vat=r.str("vat", required=False),
            gl_account=r.str("glAccount", required=False) or None,
            iban=r.str("iban", required=False) or None,
            swift_bic=r.str("swiftBic", required=False) or None,
            self_billing=r.bool("selfBilling", default=False),
            custom_field_values=tuple(values),
            raw=r.raw,
        )


@dataclass(frozen=True, kw_only=True)
class Order(AtlasRecord):
    entity = "Order"
    counterparty_id: int
    status: str
    erp_code: str | None
    document_reference: str | None
    currency: str
    registration_date: datetime
    due_date: datetime
    period_from: datetime | None
    period_to: datetime | None
    total_amount: Decimal

    @classmethod
    def _parse(cls, r: _Reader) -> Self:
        currency = r.str("currency")
        if len(currency) != 3 or not currency.isalpha():
            raise r.fail("currency", f"must be an ISO 4217 code such as EUR, got {currency!r}")
        # The guide: the trigger status is "e.g. 'Approved order by ETRM' or a numeric code —
        # confirm with your administrator". A numeric status is kept as its text ("3"), so that
        # it compares with ATLAS_TRIGGER_STATUS (text from the environment) instead of failing
        # every order of such an instance.
        raw_status = r.raw.get("status")
        if isinstance(raw_status, int) and not isinstance(raw_status, bool):
            status = str(raw_status)
        else:
            status = r.str("status")
        return cls(
            id=r.int("id"),
            counterparty_id=r.int("counterpartyId"),
            status=status,
            erp_code=r.str("erpCode", required=False) or None,
            document_reference=r.str("documentReference", required=False),
            currency=currency.upper(),
            registration_date=r.datetime("registrationDate"),
            due_date=r.datetime("dueDate"),
            period_from=r.datetime("periodFrom", required=False),
            period_to=r.datetime("periodTo", required=False),
            total_amount=r.decimal("totalAmount"),
            raw=r.raw,
        )


@dataclass(frozen=True, kw_only=True)
class OrderItem(AtlasRecord):
    entity = "OrderItem"
    order_id: int
    deal_id: int | None
    description: str | None
    net_amount: Decimal
    vat_amount: Decimal
    vat_rate: Decimal | None
    volume: Decimal | None
    volume_unit: str | None
    period_from: datetime | None
    period_to: datetime | None
    cashflow: int
    gl_account: str | None
    iban: str | None = field(repr=False)  # never in repr, as on Counterparty
    status: int

    @classmethod
    def _parse(cls, r: _Reader) -> Self:
        cashflow = r.int("cashflow")
        if cashflow not in (CASHFLOW_ACTIVE, CASHFLOW_PASSIVE):
            raise r.fail("cashflow", f"must be 0 (Active) or 1 (Passive), got {cashflow!r}")
        status = r.int("status")
        if status not in (ITEM_STATUS_CALCULATED, ITEM_STATUS_EDITED, ITEM_STATUS_IN_ORDER):
            raise r.fail("status", f"must be 0, 1 or 2, got {status!r}")
        return cls(
            id=r.int("id"),
            order_id=r.int("orderId"),
            deal_id=r.int("dealId", required=False),
            description=r.str("description", required=False),
            net_amount=r.decimal("netAmount"),
            # Required: a missing VAT is a record error, not 0 (0 is sent as 0).
            vat_amount=r.decimal("vatAmount"),
            vat_rate=r.decimal("vatRate", required=False),
            volume=r.decimal("volume", required=False),
            volume_unit=r.str("volumeUnit", required=False),
            period_from=r.datetime("periodFrom", required=False),
            period_to=r.datetime("periodTo", required=False),
            cashflow=cashflow,
            gl_account=r.str("glAccount", required=False) or None,
            iban=r.str("iban", required=False) or None,
            status=status,
            raw=r.raw,
        )

    @property
    def gross_amount(self) -> Decimal:
        return self.net_amount + self.vat_amount


@dataclass(frozen=True, kw_only=True)
class Invoice(AtlasRecord):
    entity = "Invoice"
    order_id: int
    external_id: str | None
    invoice_number: str | None
    amount: Decimal
    invoice_date: datetime | None
    due_date: datetime | None
    is_paid: bool

    @classmethod
    def _parse(cls, r: _Reader) -> Self:
        return cls(
            id=r.int("id"),
            order_id=r.int("orderId"),
            external_id=r.str("externalId", required=False) or None,
            invoice_number=r.str("invoiceNumber", required=False),
            amount=r.decimal("amount"),
            invoice_date=r.datetime("invoiceDate", required=False),
            due_date=r.datetime("dueDate", required=False),
            is_paid=r.bool("isPaid", default=False),
            raw=r.raw,
        )


@dataclass(frozen=True, kw_only=True)
class Payment(AtlasRecord):
    entity = "Payment"
    invoice_id: int | None
    order_id: int | None
    external_id: str | None
    amount: Decimal
    payment_date: datetime | None

    @classmethod
    def _parse(cls, r: _Reader) -> Self:
        return cls(
            id=r.int("id"),
            invoice_id=r.int("invoiceId", required=False),
            order_id=r.int("orderId", required=False),
            external_id=r.str("externalId", required=False) or None,
            amount=r.decimal("amount"),
            payment_date=r.datetime("paymentDate", required=False),
            raw=r.raw,
        )


R = TypeVar("R", bound=AtlasRecord)


@dataclass
class ReadResult(Generic[R]):
    """What one read returned: the records that parsed, and one error per record that did not."""

    records: list[R] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)

    def extend(self, other: ReadResult[R]) -> None:
        self.records.extend(other.records)
        self.errors.extend(other.errors)

    @property
    def by_id(self) -> dict[int, R]:
        return {record.id: record for record in self.records}


def parse_records(record_type: type[R], data: Iterable[Any]) -> ReadResult[R]:
    """Parse every raw record; a bad one becomes an error of the result, never an exception."""
    result: ReadResult[R] = ReadResult()
    for raw in data:
        try:
            result.records.append(record_type.from_json(raw))
        except RecordError as error:
            result.errors.append(error)
        except (ArithmeticError, TypeError, ValueError) as error:
            # A value no field check foresaw (e.g. Infinity as an id): still this record's
            # error, not the end of the pass.
            rid = raw.get("id") if isinstance(raw, Mapping) else None
            result.errors.append(
                RecordError(record_type.entity, rid, "(record)", f"could not be read: {error}", raw)
            )
    return result


RecordParser = Callable[[Any], AtlasRecord]
