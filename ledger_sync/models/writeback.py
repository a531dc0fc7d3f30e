"""Write-backs to ATLAS after a journal is posted, and the invoice numbers we issue.

Each write-back (the ERP document code on the order, the invoice) is a WriteBackStep with its own
state and retry, so a failed write-back is retried on its own and never re-posts the journal.
Invoice numbers come from InvoiceNumberSequence, one gap-free counter per series and year,
incremented under a row lock in the same transaction that stores the IssuedInvoice: a number is
either used by an invoice or was never taken.
"""

from __future__ import annotations

from django.db import models

__all__ = [
    "InvoiceNumberSequence",
    "IssuedInvoice",
    "WriteBackStep",
]

MONEY = {"max_digits": 18, "decimal_places": 2}


class WriteBackStep(models.Model):
    """One write-back to ATLAS for one order; unique per (order, kind)."""

    class Kind(models.TextChoices):
        ERP_CODE = "erp_code", "ERP document code (Order/Post)"
        INVOICE = "invoice", "Invoice (Invoice/Post)"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    order_sync = models.ForeignKey(
        "ledger_sync.OrderSync", on_delete=models.CASCADE, related_name="write_backs"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="When a failed step is tried again; empty = at once."
    )
    last_error = models.TextField(blank=True)
    waiting_for = models.CharField(
        max_length=64,
        blank=True,
        help_text="Set when the step waits for something outside ledger_sync "
        "(e.g. the invoice number from the ERP's invoice callback).",
    )
    request_json = models.TextField(blank=True, help_text="The last body sent to ATLAS.")
    response_json = models.TextField(blank=True, help_text="The last answer ATLAS gave.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "write-back to ATLAS"
        verbose_name_plural = "write-backs to ATLAS"
        ordering = ["-updated_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["order_sync", "kind"], name="writeback_step_unique_per_order_kind"
            )
        ]
        indexes = [models.Index(fields=["kind", "status", "next_attempt_at"])]
        # Declared here because this module is the poster's; checked as
        # user.has_perm("ledger_sync.approve_journal") by services/posting.py and the admin.
        permissions = [
            ("approve_journal", "Can approve, reject and reverse journals"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for order sync {self.order_sync_id}: {self.status}"


class InvoiceNumberSequence(models.Model):
    """The last invoice number issued in one series and year. Never decremented."""

    class Series(models.TextChoices):
        STANDARD = "standard", "Standard invoices"
        SELF_BILLING = "self_billing", "Self-billing invoices"

    series = models.CharField(max_length=16, choices=Series.choices)
    year = models.PositiveIntegerField()
    last_number = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["series", "year"]
        constraints = [
            models.UniqueConstraint(fields=["series", "year"], name="invoice_sequence_unique")
        ]

    def __str__(self) -> str:
        return f"{self.get_series_display()} {self.year}: {self.last_number}"


class IssuedInvoice(models.Model):
    """The invoice we create in ATLAS for an order. Its number is allocated and stored before
    Invoice/Post is called, and the same number (and externalId) is sent on every retry."""

    class Source(models.TextChoices):
        SEQUENCE = "sequence", "ledger_sync's gap-free sequence"
        ERP_CALLBACK = "erp_callback", "The ERP's invoice callback"

    order_sync = models.OneToOneField(
        "ledger_sync.OrderSync", on_delete=models.PROTECT, related_name="issued_invoice"
    )
    number = models.CharField(max_length=64, unique=True)
    series = models.CharField(
        max_length=16, choices=InvoiceNumberSequence.Series.choices, blank=True
    )
    year = models.PositiveIntegerField(null=True, blank=True)
    sequence_number = models.PositiveIntegerField(
        null=True, blank=True, help_text="Position in the series' year; empty for ERP numbers."
    )
    external_id = models.CharField(max_length=128, unique=True)
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3, help_text="ISO 4217")
    invoice_date = models.DateField()
    due_date = models.DateField()
    atlas_invoice_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.SEQUENCE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["series", "year", "sequence_number"],
                condition=models.Q(sequence_number__isnull=False),
                name="issued_invoice_unique_sequence_number",
            )
        ]

    def __str__(self) -> str:
        return f"Invoice {self.number} ({self.external_id})"
