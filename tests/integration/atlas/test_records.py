"""Parsing ATLAS records from JSON text: exact money, tolerant of extras, clear about errors."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from integration import wire
from integration.atlas.records import (
    Counterparty,
    CustomFieldDefinition,
    CustomFieldType,
    Invoice,
    Order,
    OrderItem,
    Payment,
    RecordError,
    parse_records,
)

ORDER_JSON = """{"id": 210, "counterpartyId": 42, "status": "Approved order by ETRM",
 "erpCode": null, "documentReference": "SO-2026-04-0042", "currency": "EUR",
 "registrationDate": "2026-04-01T00:00:00", "dueDate": "2026-04-15T00:00:00",
 "periodFrom": "2026-03-01T00:00:00", "periodTo": "2026-03-31T23:59:59",
 "totalAmount": 85500.00}"""

ITEM_JSON = """{"id": 9001, "orderId": 210, "dealId": 5001, "description": "Baseload power 2026-03",
 "netAmount": 71848.74, "vatAmount": 13651.26, "vatRate": 19.0,
 "volume": 1000.0, "volumeUnit": "MWh",
 "periodFrom": "2026-03-01T00:00:00", "periodTo": "2026-03-31T23:59:59",
 "cashflow": 0, "glAccount": null, "iban": null, "status": 2}"""

COUNTERPARTY_JSON = """{"id": 42, "name": "Energy Trader", "legalName": "Energy Trader GmbH",
 "externalId": null, "counterpartyTypeId": 1, "vat": "DE129273398", "glAccount": "4001",
 "iban": "DE89370400440532013000", "swiftBic": "COBADEFFXXX", "selfBilling": false,
 "customFieldValues": [{"customFieldId": 7, "name": "ERP Cost Centre", "value": "CC-100"}]}"""

INVOICE_JSON = """{"id": 88, "orderId": 210, "externalId": "INV-2026-0042",
 "invoiceNumber": "SB-2026-042", "amount": 85500.00, "invoiceDate": "2026-04-01T00:00:00",
 "dueDate": "2026-04-15T00:00:00", "isPaid": false}"""

PAYMENT_JSON = """{"id": 501, "invoiceId": 88, "orderId": 210, "externalId": "PAY-2026-0042",
 "amount": 85500.00, "paymentDate": "2026-04-14T00:00:00"}"""


def one(record_type, text):
    result = parse_records(record_type, [wire.loads(text)])
    assert result.errors == []
    return result.records[0]


def error_of(record_type, raw) -> RecordError:
    result = parse_records(record_type, [raw])
    assert result.records == []
    assert len(result.errors) == 1
    return result.errors[0]


def test_order_item_amounts_are_exact_decimals_from_json_text():
    item = one(OrderItem, ITEM_JSON)

    assert item.net_amount == Decimal("71848.74")
    assert isinstance(item.net_amount, Decimal)
    assert item.vat_amount == Decimal("13651.26")
    assert item.gross_amount == Decimal("85500.00")
    assert item.vat_rate == Decimal("19.0")
    assert item.volume == Decimal("1000.0")


def test_large_amounts_keep_every_digit():
    text = ORDER_JSON.replace("85500.00", "9999999999999999.99")

    order = one(Order, text)

    assert order.total_amount == Decimal("9999999999999999.99")
    assert str(order.total_amount) == "9999999999999999.99"


def test_a_float_amount_is_refused_rather_than_rounded():
    raw = {**wire.loads(ORDER_JSON), "totalAmount": 0.1}

    error = error_of(Order, raw)

    assert (error.entity, error.record_id, error.field) == ("Order", 210, "totalAmount")
    assert "float" in str(error)


def test_every_contract_shape_parses():
    order = one(Order, ORDER_JSON)
    counterparty = one(Counterparty, COUNTERPARTY_JSON)
    invoice = one(Invoice, INVOICE_JSON)
    payment = one(Payment, PAYMENT_JSON)
    field_type = one(CustomFieldType, '{"id": 1, "name": "Text"}')
    definition = one(
        CustomFieldDefinition,
        '{"id": 7, "name": "ERP Cost Centre", "type": "Text", "isRequired": false,'
        ' "counterpartyTypeIds": [1, 2], "options": []}',
    )

    assert (order.id, order.counterparty_id, order.erp_code, order.currency) == (
        210,
        42,
        None,
        "EUR",
    )
    assert order.total_amount == Decimal("85500.00")
    assert counterparty.custom_field_values[0].custom_field_id == 7
    assert counterparty.custom_field_values[0].value == "CC-100"
    assert counterparty.gl_account == "4001"
    assert counterparty.self_billing is False
    assert (invoice.external_id, invoice.amount, invoice.is_paid) == (
        "INV-2026-0042",
        Decimal("85500.00"),
        False,
    )
    assert (payment.invoice_id, payment.amount) == (88, Decimal("85500.00"))
    assert field_type.name == "Text"
    assert definition.counterparty_type_ids == (1, 2)


def test_extra_fields_are_tolerated_and_kept_in_raw():
    raw = {**wire.loads(ORDER_JSON), "approvedBy": "ops@example.com", "newThing": {"a": 1}}

    order = one(Order, wire.dumps(raw))

    assert order.raw["approvedBy"] == "ops@example.com"
    assert order.raw["newThing"] == {"a": 1}


def test_missing_optional_fields_are_none():
    raw = wire.loads(ORDER_JSON)
    for optional in ("erpCode", "documentReference", "periodFrom", "periodTo"):
        del raw[optional]

    order = one(Order, wire.dumps(raw))

    assert order.erp_code is None
    assert order.document_reference is None
    assert order.period_from is None


@pytest.mark.parametrize(
    ("record_type", "text", "required"),
    [
        (Order, ORDER_JSON, "counterpartyId"),
        (Order, ORDER_JSON, "status"),
        (Order, ORDER_JSON, "currency"),
        (Order, ORDER_JSON, "registrationDate"),
        (Order, ORDER_JSON, "dueDate"),
        (Order, ORDER_JSON, "totalAmount"),
        (OrderItem, ITEM_JSON, "orderId"),
        (OrderItem, ITEM_JSON, "netAmount"),
        (OrderItem, ITEM_JSON, "vatAmount"),
        (OrderItem, ITEM_JSON, "cashflow"),
        (OrderItem, ITEM_JSON, "status"),
        (Counterparty, COUNTERPARTY_JSON, "name"),
        (Invoice, INVOICE_JSON, "orderId"),
        (Invoice, INVOICE_JSON, "amount"),
        (Payment, PAYMENT_JSON, "amount"),
    ],
)
def test_a_missing_required_field_names_entity_id_and_field(record_type, text, required):
    raw = wire.loads(text)
    record_id = raw["id"]
    del raw[required]

    error = error_of(record_type, raw)

    assert error.entity == record_type.entity
    assert error.record_id == record_id
    assert error.field == required
    assert f"{record_type.entity} {record_id}" in str(error)
    assert required in str(error)
    assert error.raw == raw


def test_a_record_without_id_is_an_error_that_says_so():
    raw = wire.loads(ORDER_JSON)
    del raw["id"]

    error = error_of(Order, raw)

    assert error.field == "id"
    assert "(no id)" in str(error)


@pytest.mark.parametrize(
    ("record_type", "text", "field_name", "bad_value"),
    [
        (Order, ORDER_JSON, "totalAmount", "a lot"),
        (Order, ORDER_JSON, "counterpartyId", 42.5),
        (Order, ORDER_JSON, "status", ["Approved order by ETRM"]),
        (Order, ORDER_JSON, "registrationDate", "first of April"),
        (Order, ORDER_JSON, "currency", "EURO"),
        (OrderItem, ITEM_JSON, "cashflow", 2),
        (OrderItem, ITEM_JSON, "status", 7),
        (OrderItem, ITEM_JSON, "netAmount", True),
        (Invoice, INVOICE_JSON, "isPaid", "yes"),
        (Counterparty, COUNTERPARTY_JSON, "selfBilling", 1),
        (Counterparty, COUNTERPARTY_JSON, "customFieldValues", "CC-100"),
    ],
)
def test_a_wrong_type_names_the_field(record_type, text, field_name, bad_value):
    raw = {**wire.loads(text), field_name: bad_value}

    error = error_of(record_type, raw)

    assert error.field == field_name
    assert error.record_id == raw["id"]


def test_a_custom_field_value_that_is_not_an_object_names_the_counterparty():
    raw = {**wire.loads(COUNTERPARTY_JSON), "customFieldValues": ["CC-100"]}

    error = error_of(Counterparty, raw)

    assert (error.record_id, error.field) == (42, "customFieldValues[0]")


def test_a_record_that_is_not_an_object_is_an_error_not_a_crash():
    result = parse_records(Order, [wire.loads(ORDER_JSON), "210", None])

    assert [order.id for order in result.records] == [210]
    assert [error.field for error in result.errors] == ["(record)", "(record)"]


def test_an_unreadable_value_is_that_records_error_not_a_crash():
    good = wire.loads(ORDER_JSON)
    bad = {**good, "id": 211, "counterpartyId": Decimal("Infinity")}

    result = parse_records(Order, [bad, good])

    assert [order.id for order in result.records] == [210]
    assert result.errors[0].record_id == 211


def test_one_bad_record_fails_alone():
    good = wire.loads(ORDER_JSON)
    bad = {**good, "id": 211}
    del bad["totalAmount"]
    also_good = {**good, "id": 212}

    result = parse_records(Order, [good, bad, also_good])

    assert [order.id for order in result.records] == [210, 212]
    assert [(e.entity, e.record_id, e.field) for e in result.errors] == [
        ("Order", 211, "totalAmount")
    ]


def test_dates_without_zone_are_read_as_utc():
    order = one(Order, ORDER_JSON)

    assert order.registration_date == datetime(2026, 4, 1, tzinfo=UTC)
    assert order.period_to == datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC)


def test_dates_with_an_offset_are_converted_to_utc():
    raw = {**wire.loads(ORDER_JSON), "dueDate": "2026-04-15T02:00:00+02:00"}

    order = one(Order, wire.dumps(raw))

    assert order.due_date == datetime(2026, 4, 15, 0, 0, tzinfo=UTC)
    assert order.due_date.utcoffset().total_seconds() == 0


def test_content_hash_is_stable_under_key_order_and_changes_with_content():
    raw = wire.loads(ORDER_JSON)
    reordered = dict(reversed(list(raw.items())))
    changed = {**raw, "totalAmount": Decimal("85500.01")}

    first = one(Order, wire.dumps(raw)).content_hash
    second = one(Order, wire.dumps(reordered)).content_hash
    third = one(Order, wire.dumps(changed)).content_hash

    assert first == second
    assert first != third


def test_read_result_by_id_indexes_the_records():
    good = wire.loads(ORDER_JSON)
    result = parse_records(Order, [good, {**good, "id": 5}])

    assert sorted(result.by_id) == [5, 210]


def test_a_numeric_order_status_is_kept_as_its_text():
    # The guide allows the trigger status to be "a numeric code" in some ATLAS instances.
    order = Order.from_json({**wire.loads(ORDER_JSON), "status": 3})

    assert order.status == "3"
