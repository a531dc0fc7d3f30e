"""Factories for the ATLAS mirror models (ledger_sync.models.atlas)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal

import factory
from django.utils import timezone

from integration import wire
from ledger_sync.models import (
    Counterparty,
    CounterpartyCustomFieldValue,
    CustomFieldDefinition,
    CustomFieldType,
    Invoice,
    Order,
    OrderItem,
    Payment,
    SyncState,
)


def _wire(obj, **fields) -> str:
    """The record as ATLAS would send it (camelCase, Decimal amounts, zone-less dates)."""
    return wire.dumps({"id": obj.atlas_id, **fields})


class MirroredRecordFactory(factory.django.DjangoModelFactory):
    class Meta:
        abstract = True

    raw_json = factory.LazyAttribute(lambda o: _wire(o))
    # As the mirror computes it (integration.atlas.records.AtlasRecord.content_hash).
    content_hash = factory.LazyAttribute(
        lambda o: hashlib.sha256(wire.canonical(wire.loads(o.raw_json)).encode()).hexdigest()
    )
    first_seen_at = factory.LazyFunction(timezone.now)
    last_seen_at = factory.LazyFunction(timezone.now)
    last_changed_at = factory.LazyFunction(timezone.now)
    sync_state = SyncState.SYNCED


class CustomFieldTypeFactory(MirroredRecordFactory):
    class Meta:
        model = CustomFieldType

    atlas_id = factory.Sequence(lambda n: 1 + n)
    name = factory.Sequence(lambda n: f"Type {n}")
    raw_json = factory.LazyAttribute(lambda o: _wire(o, name=o.name))


class CustomFieldDefinitionFactory(MirroredRecordFactory):
    class Meta:
        model = CustomFieldDefinition

    atlas_id = factory.Sequence(lambda n: 100 + n)
    name = factory.Sequence(lambda n: f"Custom field {n}")
    field_type = "Text"
    is_required = False
    counterparty_type_ids = factory.LazyFunction(lambda: [1])
    options = factory.LazyFunction(list)
    raw_json = factory.LazyAttribute(
        lambda o: _wire(
            o,
            name=o.name,
            type=o.field_type,
            isRequired=o.is_required,
            counterpartyTypeIds=o.counterparty_type_ids,
            options=o.options,
        )
    )


class CounterpartyFactory(MirroredRecordFactory):
    class Meta:
        model = Counterparty

    atlas_id = factory.Sequence(lambda n: 1000 + n)
    name = factory.Sequence(lambda n: f"Energy Trader {n}")
    legal_name = factory.LazyAttribute(lambda o: f"{o.name} GmbH")
    external_id = None
    counterparty_type_id = 1
    vat = "DE129273398"
    gl_account = "4001"
    iban = "DE89370400440532013000"
    swift_bic = "COBADEFFXXX"
    self_billing = False
    raw_json = factory.LazyAttribute(
        lambda o: _wire(
            o,
            name=o.name,
            legalName=o.legal_name,
            externalId=o.external_id,
            counterpartyTypeId=o.counterparty_type_id,
            vat=o.vat,
            glAccount=o.gl_account or None,
            iban=o.iban or None,
            swiftBic=o.swift_bic or None,
            selfBilling=o.self_billing,
            customFieldValues=[],
        )
    )


class CounterpartyCustomFieldValueFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CounterpartyCustomFieldValue

    counterparty = factory.SubFactory(CounterpartyFactory)
    definition = factory.SubFactory(CustomFieldDefinitionFactory)
    custom_field_atlas_id = factory.SelfAttribute("definition.atlas_id")
    name = factory.SelfAttribute("definition.name")
    value = "CC-100"


class OrderFactory(MirroredRecordFactory):
    class Meta:
        model = Order

    atlas_id = factory.Sequence(lambda n: 20000 + n)
    counterparty = factory.SubFactory(CounterpartyFactory)
    counterparty_atlas_id = factory.SelfAttribute("counterparty.atlas_id")
    status = "Approved order by ETRM"
    erp_code = None
    document_reference = factory.Sequence(lambda n: f"SO-2026-04-{n:04d}")
    currency = "EUR"
    registration_date = datetime(2026, 4, 1, tzinfo=UTC)
    due_date = datetime(2026, 4, 15, tzinfo=UTC)
    period_from = datetime(2026, 3, 1, tzinfo=UTC)
    period_to = datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC)
    total_amount = Decimal("85500.00")
    raw_json = factory.LazyAttribute(
        lambda o: _wire(
            o,
            counterpartyId=o.counterparty_atlas_id,
            status=o.status,
            erpCode=o.erp_code,
            documentReference=o.document_reference,
            currency=o.currency,
            registrationDate=o.registration_date,
            dueDate=o.due_date,
            periodFrom=o.period_from,
            periodTo=o.period_to,
            totalAmount=o.total_amount,
        )
    )


class OrderItemFactory(MirroredRecordFactory):
    class Meta:
        model = OrderItem

    atlas_id = factory.Sequence(lambda n: 900000 + n)
    order = factory.SubFactory(OrderFactory)
    order_atlas_id = factory.SelfAttribute("order.atlas_id")
    deal_id = 5001
    description = "Baseload power 2026-03"
    net_amount = Decimal("71848.74")
    vat_amount = Decimal("13651.26")
    vat_rate = Decimal("19.0")
    volume = Decimal("1000.0")
    volume_unit = "MWh"
    period_from = datetime(2026, 3, 1, tzinfo=UTC)
    period_to = datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC)
    cashflow = OrderItem.Cashflow.ACTIVE
    gl_account = ""
    iban = ""
    status = OrderItem.Status.IN_ORDER
    raw_json = factory.LazyAttribute(
        lambda o: _wire(
            o,
            orderId=o.order_atlas_id,
            dealId=o.deal_id,
            description=o.description,
            netAmount=o.net_amount,
            vatAmount=o.vat_amount,
            vatRate=o.vat_rate,
            volume=o.volume,
            volumeUnit=o.volume_unit,
            periodFrom=o.period_from,
            periodTo=o.period_to,
            cashflow=int(o.cashflow),
            glAccount=o.gl_account or None,
            iban=o.iban or None,
            status=int(o.status),
        )
    )


class InvoiceFactory(MirroredRecordFactory):
    class Meta:
        model = Invoice

    atlas_id = factory.Sequence(lambda n: 80000 + n)
    order = factory.SubFactory(OrderFactory)
    order_atlas_id = factory.SelfAttribute("order.atlas_id")
    external_id = factory.Sequence(lambda n: f"INV-2026-{n:04d}")
    invoice_number = factory.Sequence(lambda n: f"SB-2026-{n:04d}")
    amount = Decimal("85500.00")
    invoice_date = datetime(2026, 4, 1, tzinfo=UTC)
    due_date = datetime(2026, 4, 15, tzinfo=UTC)
    is_paid = False
    raw_json = factory.LazyAttribute(
        lambda o: _wire(
            o,
            orderId=o.order_atlas_id,
            externalId=o.external_id,
            invoiceNumber=o.invoice_number,
            amount=o.amount,
            invoiceDate=o.invoice_date,
            dueDate=o.due_date,
            isPaid=o.is_paid,
        )
    )


class PaymentFactory(MirroredRecordFactory):
    class Meta:
        model = Payment

    atlas_id = factory.Sequence(lambda n: 500000 + n)
    invoice = factory.SubFactory(InvoiceFactory)
    invoice_atlas_id = factory.SelfAttribute("invoice.atlas_id")
    order = factory.SelfAttribute("invoice.order")
    order_atlas_id = factory.SelfAttribute("invoice.order_atlas_id")
    external_id = factory.Sequence(lambda n: f"PAY-2026-{n:04d}")
    amount = Decimal("85500.00")
    payment_date = datetime(2026, 4, 14, tzinfo=UTC)
    raw_json = factory.LazyAttribute(
        lambda o: _wire(
            o,
            invoiceId=o.invoice_atlas_id,
            orderId=o.order_atlas_id,
            externalId=o.external_id,
            amount=o.amount,
            paymentDate=o.payment_date,
        )
    )
