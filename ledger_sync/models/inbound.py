"""What arrives from outside: ATLAS webhooks, and the ERP's and bank's callbacks.

Every inbound request that is accepted is stored before it is answered, and worked on by a task
afterwards (DESIGN.md "exactly once"):

- `InboundDelivery`: one ATLAS webhook delivery, with its raw body, the headers worth keeping,
  and a dedup key that is UNIQUE, so a duplicate (also two copies arriving at the same moment)
  is recognised by the database itself and acknowledged without being processed again.
- `ApiClient`: a caller of the callback API (the ERP, a bank connector). Only a hash of its
  token is stored; the token itself is shown once, when the client is created.
- `PaymentConfirmation`: a confirmed payment, keyed by the caller's `externalId` (UNIQUE) with a
  fingerprint of the request, so the same request again is answered with the same result and
  the same key with other content is a conflict, never a silent success. Written to ATLAS
  (Payment/Post) by a task.
- `InvoiceSettlement`: an invoice whose payments reached its amount; unique per ATLAS invoice,
  so Invoice/Post with isPaid=true is sent once.
- `InvoiceReport`: the ERP reporting an invoice it issued for an order, same pattern.
"""

from __future__ import annotations

from django.db import models

__all__ = [
    "ApiClient",
    "InboundDelivery",
    "InvoiceReport",
    "InvoiceSettlement",
    "LedgerSettlementState",
    "PaymentConfirmation",
]

MONEY = {"max_digits": 18, "decimal_places": 2}


class InboundDelivery(models.Model):
    """One accepted webhook delivery. Rejected deliveries (bad signature, malformed body) are
    logged, never stored: storing them would let anyone fill the table."""

    class Source(models.TextChoices):
        ATLAS_WEBHOOK = "atlas_webhook", "ATLAS webhook"
        PAYMENT = "payment", "Payment callback"
        INVOICE = "invoice", "Invoice callback"

    class State(models.TextChoices):
        RECEIVED = "received", "Received, waiting for the task"
        PROCESSING = "processing", "Processing"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored (event or status not handled)"
        FAILED = "failed", "Failed"

    source = models.CharField(
        max_length=16, choices=Source.choices, default=Source.ATLAS_WEBHOOK, db_index=True
    )
    dedup_key = models.CharField(
        max_length=200,
        unique=True,
        help_text="A hash of the signed event: event, entity id, new status and timestamp.",
    )
    event_type = models.CharField(max_length=100, blank=True, db_index=True)
    entity_type = models.CharField(max_length=64, blank=True)
    entity_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    new_status = models.CharField(max_length=255, blank=True)
    event_timestamp = models.CharField(
        max_length=64, blank=True, help_text="The payload's timestamp, as sent."
    )
    raw_body = models.TextField(help_text="The body exactly as received (size-capped).")
    headers = models.JSONField(
        default=dict, blank=True, help_text="Headers worth keeping; never the signature."
    )
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    received_at = models.DateTimeField(db_index=True)
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.RECEIVED, db_index=True
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="When a failed delivery is tried again; empty = never."
    )
    claimed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the task processing it started."
    )
    result = models.TextField(blank=True, help_text="What processing did, or why it was ignored.")
    last_error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    replays = models.PositiveIntegerField(default=0, help_text="Times replayed from the admin.")

    class Meta:
        verbose_name = "inbound webhook delivery"
        verbose_name_plural = "inbound webhook deliveries"
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="inbound_due")]

    def __str__(self) -> str:
        return f"{self.event_type or 'event'} {self.entity_type} {self.entity_id} ({self.state})"


class ApiClient(models.Model):
    """A caller of the callback API. The token is `<prefix>.<secret>`; the prefix finds the row,
    the secret is compared against `token_hash` (SHA-256) in constant time."""

    class Permission(models.TextChoices):
        PAYMENTS = "payments", "Confirm payments (POST /api/payments/)"
        INVOICES = "invoices", "Report invoices (POST /api/invoices/)"

    name = models.CharField(max_length=100, unique=True)
    token_prefix = models.CharField(
        max_length=16, unique=True, help_text="The token's public first part, to tell it apart."
    )
    token_hash = models.CharField(max_length=64, help_text="SHA-256 of the token's secret.")
    can_confirm_payments = models.BooleanField(default=False)
    can_report_invoices = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    notes = models.TextField(blank=True)

    class Meta:
        verbose_name = "API client"
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.token_prefix}…)"

    def has_permission(self, permission: str) -> bool:
        if permission == self.Permission.PAYMENTS:
            return self.can_confirm_payments
        if permission == self.Permission.INVOICES:
            return self.can_report_invoices
        return False


class CallbackState(models.TextChoices):
    ACCEPTED = "accepted", "Accepted, not yet in ATLAS"
    WRITTEN_TO_ATLAS = "written_to_atlas", "Written to ATLAS"
    FAILED = "failed", "Failed, retried with backoff"
    REJECTED = "rejected", "Refused by ATLAS: a person must look"


class _Callback(models.Model):
    """What a payment confirmation and an invoice report share: the idempotency key and
    fingerprint, the request as received, who sent it, and the delivery to ATLAS."""

    external_id = models.CharField(max_length=128, unique=True)
    request_fingerprint = models.CharField(
        max_length=64, help_text="SHA-256 of the normalised request: same key, same content."
    )
    request_json = models.TextField(help_text="The request body as received.")
    api_client = models.ForeignKey(
        ApiClient, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    state = models.CharField(
        max_length=20,
        choices=CallbackState.choices,
        default=CallbackState.ACCEPTED,
        db_index=True,
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    claimed_until = models.DateTimeField(
        null=True, blank=True, help_text="A worker is writing it to ATLAS until then."
    )
    last_error = models.TextField(blank=True)
    atlas_request_json = models.TextField(blank=True, help_text="The last body sent to ATLAS.")
    atlas_response_json = models.TextField(blank=True, help_text="What ATLAS answered.")
    received_at = models.DateTimeField(db_index=True)
    confirmed_at = models.DateTimeField(null=True, blank=True, help_text="When ATLAS confirmed it.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class LedgerSettlementState(models.TextChoices):
    PENDING = "pending", "To post to the AR Ledger"
    POSTED = "posted", "Settlement posted to the AR Ledger"
    FAILED = "failed", "Failed, retried with backoff"
    BLOCKED = "blocked", "Blocked: a person must fix something"
    NOT_OURS = "not_ours", "No journal of ours to settle"


class PaymentConfirmation(_Callback):
    """A confirmed payment from the ERP or the bank, written to ATLAS through Payment/Post."""

    invoice_reference = models.CharField(
        max_length=128, help_text="The invoice as the caller named it (externalId or ATLAS id)."
    )
    invoice_external_id = models.CharField(max_length=128, blank=True, db_index=True)
    invoice_atlas_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    order_atlas_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3, help_text="ISO 4217")
    payment_date = models.DateField()
    atlas_payment_id = models.BigIntegerField(null=True, blank=True)
    invoice_checked_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the invoice's payments were compared with its amount after this "
        "payment (isPaid set when they reach it); empty = still to do.",
    )
    # The AR Ledger settlement transaction (a Journal of kind settlement), posted apart from
    # the ATLAS write so that neither waits for the other.
    ledger_state = models.CharField(
        max_length=16,
        choices=LedgerSettlementState.choices,
        default=LedgerSettlementState.PENDING,
        db_index=True,
    )
    ledger_attempts = models.PositiveIntegerField(default=0)
    ledger_next_attempt_at = models.DateTimeField(null=True, blank=True)
    ledger_error = models.TextField(blank=True)

    class Meta:
        verbose_name = "payment confirmation"
        ordering = ["-received_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount__gt=0), name="payment_confirmation_amount_gt_0"
            )
        ]

    def __str__(self) -> str:
        return f"Payment {self.external_id}: {self.amount} {self.currency} ({self.state})"


class InvoiceSettlement(models.Model):
    """An ATLAS invoice whose payments reached its amount. One row per invoice: Invoice/Post
    with isPaid=true is sent while it is pending, and never again once done."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "isPaid set in ATLAS"
        FAILED = "failed", "Failed, retried with backoff"

    invoice_atlas_id = models.BigIntegerField(unique=True)
    order_atlas_id = models.BigIntegerField(null=True, blank=True)
    paid_total = models.DecimalField(**MONEY)
    invoice_amount = models.DecimalField(**MONEY)
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.PENDING, db_index=True
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    request_json = models.TextField(blank=True)
    response_json = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Invoice {self.invoice_atlas_id} settled ({self.state})"


class InvoiceReport(_Callback):
    """The ERP reports an invoice it issued for an order; created in ATLAS through Invoice/Post
    (after looking it up by externalId) by the write-back of the order."""

    order_atlas_id = models.BigIntegerField(db_index=True)
    invoice_number = models.CharField(max_length=64)
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3, help_text="ISO 4217")
    invoice_date = models.DateField()
    due_date = models.DateField()
    atlas_invoice_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        verbose_name = "invoice report"
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"Invoice {self.invoice_number} ({self.external_id}) for order {self.order_atlas_id}"
