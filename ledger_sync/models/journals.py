"""The order pipeline: each ATLAS order's sync record and state history, and the journals
(one accounting transaction each) built from it, with their lines.

An order's sync record carries the state machine of DESIGN.md (services/order_states.py guards
every change and records it as an OrderTransition). A journal is built and stored, with its
`source_transaction_reference`, before anything is sent to the AR Ledger; once posted it is
never edited — a correction is a reversing journal and a new revision.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

__all__ = [
    "BlockedReason",
    "Journal",
    "JournalLine",
    "OrderState",
    "OrderSync",
    "OrderTransition",
]


class OrderState(models.TextChoices):
    MIRRORED = "mirrored", "Mirrored, not yet examined"
    WAITING = "waiting", "Waiting for items still under review in ATLAS"
    READY = "ready", "Ready to build"
    JOURNAL_BUILT = "journal_built", "Journal built, nothing sent yet"
    AWAITING_REVIEW = "awaiting_review", "Draft in the ledger, awaiting review"
    POSTING = "posting", "Posting"
    POSTED = "posted", "Posted"
    ERP_CODE_WRITTEN = "erp_code_written", "ERP code written to ATLAS"
    INVOICED = "invoiced", "Invoiced"
    PARTIALLY_PAID = "partially_paid", "Partially paid"
    PAID = "paid", "Paid"
    BLOCKED = "blocked", "Blocked: a person must fix something"
    FAILED = "failed", "Failed: retried with backoff"
    PROCESSED_ELSEWHERE = (
        "processed_elsewhere",
        "Processed elsewhere (ERP code already set in ATLAS)",
    )


class BlockedReason(models.TextChoices):
    UNMATCHED_COUNTERPARTY = "unmatched_counterparty", "Counterparty not mapped to an ERP code"
    UNKNOWN_COUNTERPARTY = "unknown_counterparty", "Counterparty not in the mirror"
    MISSING_GL_ACCOUNT = "missing_gl_account", "No GL account on item or counterparty"
    UNKNOWN_GL_ACCOUNT = "unknown_gl_account", "GL account not in the chart"
    NON_POSTING_GL_ACCOUNT = "non_posting_gl_account", "GL account is not a posting account"
    INACTIVE_GL_ACCOUNT = "inactive_gl_account", "GL account is not active"
    MISSING_CONTROL_ACCOUNT = "missing_control_account", "Control account not set or unusable"
    CLOSED_PERIOD = "closed_period", "Date in a closed accounting period"
    NO_OPEN_PERIOD = "no_open_period", "No open accounting period for the date"
    TOTALS_DISAGREE = "totals_disagree", "Order total differs from its items"
    UNBALANCED = "unbalanced", "Debits differ from credits"
    NO_BOOKABLE_ITEMS = "no_bookable_items", "No item In order"
    CURRENCY_MISMATCH = "currency_mismatch", "Currency inconsistent"
    REMOTE_REJECTION = "remote_rejection", "Rejected by the AR Ledger"
    REJECTED_IN_REVIEW = "rejected_in_review", "Rejected in review by an accountant"
    INVALID_RECORD = "invalid_record", "Invalid record"
    WRONG_ACCOUNT_ROLE = "wrong_account_role", "GL account of the wrong role for its line"
    VAT_MISMATCH = "vat_mismatch", "VAT amount differs from net amount x VAT rate"


class OrderSync(models.Model):
    """One per ATLAS order that ever was a candidate: where it is in the pipeline and why."""

    order = models.OneToOneField("ledger_sync.Order", on_delete=models.PROTECT, related_name="sync")
    state = models.CharField(
        max_length=32, choices=OrderState.choices, default=OrderState.MIRRORED, db_index=True
    )
    blocked_reason = models.CharField(
        max_length=32, choices=BlockedReason.choices, blank=True, db_index=True
    )
    blocked_message = models.TextField(
        blank=True, help_text="A sentence a person understands, with both figures."
    )
    blocked_fix_url = models.CharField(
        max_length=500, blank=True, help_text="Admin URL of what clears the block."
    )
    blocked_problems = models.JSONField(
        default=list,
        blank=True,
        help_text="Every problem found when the order was last validated, most important first: "
        '[{"reason", "message", "fix_url"}]. blocked_reason/message/fix_url repeat the first.',
    )
    waiting_on_items = models.JSONField(
        default=list,
        blank=True,
        help_text="ATLAS ids of the items still Calculated or Edited (not yet In order).",
    )
    revision = models.PositiveIntegerField(default=1, help_text="Journal revision to post next.")
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_error = models.TextField(blank=True)
    claimed_by = models.CharField(max_length=64, blank=True, help_text="Worker holding the claim.")
    claimed_at = models.DateTimeField(null=True, blank=True)
    erp_code = models.CharField(
        "ERP document code",
        max_length=64,
        blank=True,
        help_text="The ERP document code written back to ATLAS.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        verbose_name = "order sync"

    def __str__(self) -> str:
        return f"order {self.order_id} ({self.state})"


class OrderTransition(models.Model):
    """Every state change of an order: from what to what, who or what made it, when, why."""

    order_sync = models.ForeignKey(OrderSync, on_delete=models.CASCADE, related_name="transitions")
    from_state = models.CharField(max_length=32, choices=OrderState.choices)
    to_state = models.CharField(max_length=32, choices=OrderState.choices)
    actor = models.CharField(max_length=150, help_text='A username, or "system:<task or command>".')
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.TextField(blank=True)
    at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["order_sync_id", "at", "id"]

    def __str__(self) -> str:
        return f"{self.from_state} → {self.to_state} by {self.actor}"


class Journal(models.Model):
    """One accounting transaction for the AR Ledger. Never edited once posted."""

    class Kind(models.TextChoices):
        POSTING = "posting", "Posting"
        REVERSAL = "reversal", "Reversal"
        SETTLEMENT = "settlement", "Settlement of a payment"

    class Status(models.TextChoices):
        BUILT = "built", "Built, nothing sent"
        DRAFT = "draft", "Draft in the ledger"
        POSTED = "posted", "Posted"
        REJECTED = "rejected", "Rejected (draft deleted)"
        REVERSED = "reversed", "Reversed"
        SUPERSEDED = "superseded", "Superseded (rebuilt before sending)"

    class Workflow(models.TextChoices):
        AUTO = "auto", "Automatic"
        REVIEW = "review", "Review"

    order_sync = models.ForeignKey(OrderSync, on_delete=models.PROTECT, related_name="journals")
    revision = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.POSTING)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.BUILT, db_index=True
    )
    # Chosen and stored before the first remote call, reused on every retry.
    # posting: ATLAS-ORDER-{atlas_order_id}-R{revision}; reversal: the same + "-REV";
    # settlement: ATLAS-PAYMENT-{payment_confirmation.pk}.
    source_transaction_reference = models.CharField(max_length=64, unique=True)
    workflow = models.CharField(max_length=16, choices=Workflow.choices)
    currency = models.CharField(max_length=3)
    total_debit = models.DecimalField(max_digits=18, decimal_places=2)
    total_credit = models.DecimalField(max_digits=18, decimal_places=2)
    occurred_on = models.DateField()
    event_date = models.DateField()
    ledger_transaction_id = models.CharField("AR Ledger transaction id", max_length=64, blank=True)
    landed_period = models.CharField(
        max_length=255, blank=True, help_text="Accounting period the journal lands in."
    )
    request_json = models.TextField(blank=True, help_text="As sent to the AR Ledger.")
    response_json = models.TextField(blank=True, help_text="As received from the AR Ledger.")
    reversal_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversals"
    )
    rejected_reason = models.TextField(blank=True)
    payment_confirmation = models.OneToOneField(
        "ledger_sync.PaymentConfirmation",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="settlement_journal",
        help_text="The payment a settlement journal books (kind settlement only).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    posted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["order_sync", "revision", "kind"])]

    def __str__(self) -> str:
        return f"{self.source_transaction_reference} ({self.status})"


class JournalLine(models.Model):
    """One entry of a journal. The amount is always positive; the side carries the direction."""

    class Side(models.TextChoices):
        DEBIT = "debit", "Debit"
        CREDIT = "credit", "Credit"

    journal = models.ForeignKey(Journal, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField()
    side = models.CharField(max_length=6, choices=Side.choices)
    gl_account = models.CharField("GL account", max_length=32)
    amount = models.DecimalField(max_digits=18, decimal_places=2)
    currency = models.CharField(max_length=3)
    billing_account_num = models.CharField("ERP party (billing account)", max_length=64, blank=True)
    description = models.CharField(max_length=255)
    entry_values = models.JSONField(default=dict, blank=True)
    order_item = models.ForeignKey(
        "ledger_sync.OrderItem",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="journal_lines",
    )

    class Meta:
        ordering = ["journal_id", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["journal", "position"], name="journalline_unique_position"
            ),
            models.CheckConstraint(
                condition=models.Q(amount__gte=0), name="journalline_amount_gte_0"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.side} {self.gl_account} {self.amount} {self.currency}"
