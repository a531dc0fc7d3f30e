"""ATLAS mirror: custom field definitions, counterparties, orders, items, invoices, payments.

Each model is a local copy of one ATLAS record (see MirroredRecord): `atlas_id` is ATLAS's id,
the typed columns are what the rest of ledger_sync filters and computes on, and `raw_json` keeps
the record exactly as ATLAS sent it. Foreign keys to other mirrored records are resolved from
the ATLAS ids kept next to them (`order_atlas_id` ...): a child that arrives before its parent
keeps the id, gets a null FK and is linked on a later pass. ATLAS is the source; nothing here is
edited by hand.
"""

from __future__ import annotations

from django.db import models

from .base import MirroredRecord

__all__: list[str] = [
    "Counterparty",
    "CounterpartyCustomFieldValue",
    "CustomFieldDefinition",
    "CustomFieldType",
    "Invoice",
    "Order",
    "OrderItem",
    "Payment",
]

MONEY = {"max_digits": 18, "decimal_places": 2}


class CustomFieldType(MirroredRecord):
    atlas_id = models.BigIntegerField("ATLAS id", unique=True)
    name = models.CharField(max_length=255)

    class Meta:
        verbose_name = "ATLAS custom field type"
        ordering = ["atlas_id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.atlas_id})"


class CustomFieldDefinition(MirroredRecord):
    atlas_id = models.BigIntegerField("ATLAS id", unique=True)
    name = models.CharField(max_length=255, db_index=True)
    field_type = models.CharField(max_length=64, blank=True)
    is_required = models.BooleanField(default=False)
    counterparty_type_ids = models.JSONField(default=list, blank=True)
    options = models.JSONField(default=list, blank=True)

    class Meta:
        verbose_name = "ATLAS custom field definition"
        ordering = ["atlas_id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.atlas_id})"


class Counterparty(MirroredRecord):
    atlas_id = models.BigIntegerField("ATLAS id", unique=True)
    name = models.CharField(max_length=255)
    legal_name = models.CharField(max_length=255, blank=True)
    # The ERP customer/vendor code once mapped; null until then (the guide's stable key).
    external_id = models.CharField(  # noqa: DJ001
        "ERP code (ATLAS externalId)", max_length=128, null=True, blank=True, db_index=True
    )
    counterparty_type_id = models.BigIntegerField(null=True, blank=True)
    vat = models.CharField("VAT number", max_length=64, blank=True, db_index=True)
    gl_account = models.CharField("GL account", max_length=64, blank=True)
    iban = models.CharField("IBAN", max_length=64, blank=True)
    swift_bic = models.CharField("SWIFT/BIC", max_length=16, blank=True)
    self_billing = models.BooleanField(default=False)

    class Meta:
        verbose_name = "ATLAS counterparty"
        verbose_name_plural = "ATLAS counterparties"
        ordering = ["atlas_id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.atlas_id})"


class CounterpartyCustomFieldValue(models.Model):
    """One `customFieldValues` entry of a counterparty; replaced whenever the counterparty
    changes in ATLAS (it has no id of its own there)."""

    counterparty = models.ForeignKey(
        Counterparty, on_delete=models.CASCADE, related_name="custom_field_values"
    )
    custom_field_atlas_id = models.BigIntegerField()
    definition = models.ForeignKey(
        CustomFieldDefinition,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="values",
    )
    name = models.CharField(max_length=255, blank=True)
    # JSON as ATLAS sent it; a decimal number is kept as its exact text.
    value = models.JSONField(null=True, blank=True)

    class Meta:
        verbose_name = "ATLAS counterparty custom field value"
        constraints = [
            models.UniqueConstraint(
                fields=["counterparty", "custom_field_atlas_id"],
                name="atlas_cp_custom_field_value_unique",
            )
        ]
        ordering = ["counterparty_id", "custom_field_atlas_id"]

    def __str__(self) -> str:
        return f"{self.name or self.custom_field_atlas_id} = {self.value!r}"


class Order(MirroredRecord):
    atlas_id = models.BigIntegerField("ATLAS id", unique=True)
    counterparty = models.ForeignKey(
        Counterparty, null=True, blank=True, on_delete=models.SET_NULL, related_name="orders"
    )
    counterparty_atlas_id = models.BigIntegerField("ATLAS counterparty id", db_index=True)
    status = models.CharField(max_length=128)
    # ATLAS's processed flag: the ERP document code written back after posting; null = not yet.
    erp_code = models.CharField("ERP document code", max_length=128, null=True, blank=True)  # noqa: DJ001
    document_reference = models.CharField(max_length=128, blank=True)
    currency = models.CharField(max_length=3, help_text="ISO 4217")
    registration_date = models.DateTimeField()
    due_date = models.DateTimeField()
    period_from = models.DateTimeField(null=True, blank=True)
    period_to = models.DateTimeField(null=True, blank=True)
    total_amount = models.DecimalField(**MONEY)

    class Meta:
        verbose_name = "ATLAS order"
        ordering = ["-atlas_id"]
        indexes = [
            # The journal selection: status = trigger status and erp_code is null.
            models.Index(fields=["status", "erp_code"], name="atlas_order_status_erp"),
            models.Index(fields=["currency"], name="atlas_order_currency"),
        ]

    def __str__(self) -> str:
        return f"Order {self.atlas_id}" + (
            f" {self.document_reference}" if self.document_reference else ""
        )


class OrderItem(MirroredRecord):
    class Cashflow(models.IntegerChoices):
        ACTIVE = 0, "Active (receivable)"
        PASSIVE = 1, "Passive (payable)"

    class Status(models.IntegerChoices):
        CALCULATED = 0, "Calculated"
        EDITED = 1, "Edited"
        IN_ORDER = 2, "In order"

    atlas_id = models.BigIntegerField("ATLAS id", unique=True)
    order = models.ForeignKey(
        Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="items"
    )
    order_atlas_id = models.BigIntegerField("ATLAS order id", db_index=True)
    deal_id = models.BigIntegerField("ATLAS deal id", null=True, blank=True)
    description = models.TextField(blank=True)
    # Signed as in ATLAS: positive on Active items, negative on Passive ones.
    net_amount = models.DecimalField(**MONEY)
    vat_amount = models.DecimalField("VAT amount", **MONEY)
    vat_rate = models.DecimalField(
        "VAT rate (%)", max_digits=9, decimal_places=4, null=True, blank=True
    )
    volume = models.DecimalField(max_digits=24, decimal_places=6, null=True, blank=True)
    volume_unit = models.CharField(max_length=32, blank=True)
    period_from = models.DateTimeField(null=True, blank=True)
    period_to = models.DateTimeField(null=True, blank=True)
    cashflow = models.PositiveSmallIntegerField(choices=Cashflow.choices)
    gl_account = models.CharField("GL account", max_length=64, blank=True)
    iban = models.CharField("IBAN", max_length=64, blank=True)
    status = models.PositiveSmallIntegerField(choices=Status.choices)

    class Meta:
        verbose_name = "ATLAS order item"
        ordering = ["-atlas_id"]
        indexes = [
            models.Index(fields=["status"], name="atlas_item_status"),
            models.Index(fields=["cashflow"], name="atlas_item_cashflow"),
        ]

    def __str__(self) -> str:
        return f"Order item {self.atlas_id}"


class Invoice(MirroredRecord):
    atlas_id = models.BigIntegerField("ATLAS id", unique=True)
    order = models.ForeignKey(
        Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="invoices"
    )
    order_atlas_id = models.BigIntegerField("ATLAS order id", db_index=True)
    external_id = models.CharField(  # noqa: DJ001
        "ERP reference (externalId)", max_length=128, null=True, blank=True, db_index=True
    )
    invoice_number = models.CharField(max_length=128, blank=True)
    amount = models.DecimalField(**MONEY)
    invoice_date = models.DateTimeField(null=True, blank=True)
    due_date = models.DateTimeField(null=True, blank=True)
    is_paid = models.BooleanField(default=False)

    class Meta:
        verbose_name = "ATLAS invoice"
        ordering = ["-atlas_id"]

    def __str__(self) -> str:
        return f"Invoice {self.atlas_id}" + (f" {self.external_id}" if self.external_id else "")


class Payment(MirroredRecord):
    atlas_id = models.BigIntegerField("ATLAS id", unique=True)
    invoice = models.ForeignKey(
        Invoice, null=True, blank=True, on_delete=models.SET_NULL, related_name="payments"
    )
    invoice_atlas_id = models.BigIntegerField(
        "ATLAS invoice id", null=True, blank=True, db_index=True
    )
    order = models.ForeignKey(
        Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="payments"
    )
    order_atlas_id = models.BigIntegerField("ATLAS order id", null=True, blank=True, db_index=True)
    external_id = models.CharField(  # noqa: DJ001
        "ERP reference (externalId)", max_length=128, null=True, blank=True, db_index=True
    )
    amount = models.DecimalField(**MONEY)
    payment_date = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "ATLAS payment"
        ordering = ["-atlas_id"]

    def __str__(self) -> str:
        return f"Payment {self.atlas_id}" + (f" {self.external_id}" if self.external_id else "")
