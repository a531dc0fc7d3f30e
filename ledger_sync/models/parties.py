"""ERP parties, counterparty match proposals and mappings, master-data corrections and
custom-field mappings.

The ERP party register is the list of Gotransverse billing accounts (customers and vendors).
Every ATLAS counterparty is mapped to one of them; the mapping's code is written back to ATLAS
as the counterparty's `externalId`, which then is the stable key between the two systems.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from .atlas import Counterparty

__all__ = [
    "CounterpartyMapping",
    "CounterpartyMatching",
    "CustomFieldMapping",
    "CustomFieldMappingChange",
    "ErpParty",
    "MasterDataCorrection",
    "MatchProposal",
    "WriteBackState",
]


class ErpParty(models.Model):
    """A customer or vendor of the ERP, identified by its Gotransverse billing account number."""

    class Role(models.TextChoices):
        CUSTOMER = "customer", "Customer"
        VENDOR = "vendor", "Vendor"
        BOTH = "both", "Customer and vendor"

    code = models.CharField(
        max_length=64, unique=True, help_text="The Gotransverse billing account number."
    )
    legal_name = models.CharField(max_length=255)
    vat = models.CharField(
        "VAT number",
        max_length=32,
        blank=True,
        db_index=True,
        help_text="Normalised: country prefix and number, no spaces or dots (DE129273398).",
    )
    iban = models.CharField(
        "IBAN", max_length=34, blank=True, db_index=True, help_text="Without spaces."
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.BOTH)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]
        verbose_name = "ERP party"
        verbose_name_plural = "ERP parties"

    def __str__(self) -> str:
        return f"{self.code} {self.legal_name}"


class MatchProposal(models.Model):
    """An ERP party proposed for an ATLAS counterparty, with the score and the reasons.

    One row per (counterparty, ERP party) pair: a rejected pair stays rejected, so matching
    never proposes it again.
    """

    class Status(models.TextChoices):
        PROPOSED = "proposed", "Proposed"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        SUPERSEDED = "superseded", "Superseded by another mapping"

    counterparty = models.ForeignKey(
        "ledger_sync.Counterparty", on_delete=models.CASCADE, related_name="match_proposals"
    )
    erp_party = models.ForeignKey(ErpParty, on_delete=models.CASCADE, related_name="proposals")
    score = models.PositiveSmallIntegerField(help_text="0-100; higher is a stronger match.")
    reasons = models.JSONField(
        default=list, help_text='[{"code": "vat_equal", "points": 60, "text": "..."}, ...]'
    )
    rank = models.PositiveSmallIntegerField(default=1, help_text="1 is the best candidate.")
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PROPOSED, db_index=True
    )
    proposed_at = models.DateTimeField()
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["counterparty_id", "rank", "-score"]
        constraints = [
            models.UniqueConstraint(
                fields=["counterparty", "erp_party"], name="matchproposal_unique_pair"
            )
        ]
        permissions = [
            ("approve_matchproposal", "Can approve or reject counterparty match proposals")
        ]

    def __str__(self) -> str:
        return f"{self.erp_party.code} for counterparty {self.counterparty_id} ({self.score})"

    @property
    def reasons_text(self) -> str:
        return "; ".join(reason.get("text", "") for reason in self.reasons or [])


class WriteBackState(models.TextChoices):
    NOT_NEEDED = "not_needed", "Nothing to write"
    PENDING = "pending", "Waiting to be written to ATLAS"
    WRITTEN = "written", "Written to ATLAS"
    FAILED = "failed", "ATLAS refused or could not be reached"


class CounterpartyMapping(models.Model):
    """Which ERP code an ATLAS counterparty maps to, how that was decided, and whether the code
    has reached ATLAS as `externalId`."""

    class Source(models.TextChoices):
        EXTERNAL_ID = "external_id", "ATLAS externalId"
        PROPOSAL = "proposal", "Approved proposal"
        NEW_PARTY = "new_party", "New ERP party"

    counterparty = models.OneToOneField(
        "ledger_sync.Counterparty", on_delete=models.CASCADE, related_name="erp_mapping"
    )
    erp_code = models.CharField("ERP code", max_length=64, db_index=True)
    erp_party = models.ForeignKey(
        ErpParty,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="mappings",
        help_text="Empty when the code is not in the ERP party register (then flagged).",
    )
    source = models.CharField(max_length=16, choices=Source.choices)
    proposal = models.ForeignKey(
        MatchProposal, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    flagged = models.BooleanField(default=False, db_index=True)
    flag_reason = models.TextField(blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    write_back_state = models.CharField(
        max_length=16,
        choices=WriteBackState.choices,
        default=WriteBackState.NOT_NEEDED,
        db_index=True,
    )
    write_back_attempts = models.PositiveIntegerField(default=0)
    written_back_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["counterparty_id"]

    def __str__(self) -> str:
        return f"counterparty {self.counterparty_id} → {self.erp_code}"


class MasterDataCorrection(models.Model):
    """A change to master data the ERP owns (GL account, IBAN, SWIFT/BIC), made in the admin,
    approved by a finance lead, then pushed to ATLAS with Counterparty/Post."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        APPROVED = "approved", "Approved, waiting to be pushed"
        PUSHED = "pushed", "Pushed to ATLAS"
        FAILED = "failed", "Push failed"

    # Local field name -> ATLAS wire name. Only what the ERP is the system of record for.
    FIELDS = {"gl_account": "glAccount", "iban": "iban", "swift_bic": "swiftBic"}

    counterparty = models.ForeignKey(
        "ledger_sync.Counterparty", on_delete=models.CASCADE, related_name="corrections"
    )
    before = models.JSONField(default=dict, help_text="The mirrored values when requested.")
    after = models.JSONField(default=dict, help_text="The corrected values to push.")
    reason = models.TextField(blank=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.DRAFT, db_index=True
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField()
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    pushed_at = models.DateTimeField(null=True, blank=True)
    push_attempts = models.PositiveIntegerField(default=0)
    atlas_answer = models.JSONField(
        null=True, blank=True, help_text="The record ATLAS answered with."
    )
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        permissions = [
            ("approve_masterdatacorrection", "Can approve and push master-data corrections")
        ]

    def __str__(self) -> str:
        return f"correction {self.pk} of counterparty {self.counterparty_id}"


class CustomFieldMapping(models.Model):
    """Where an ATLAS custom field goes on a journal entry (an `entry_values` key), or that it
    is deliberately ignored."""

    definition = models.OneToOneField(
        "ledger_sync.CustomFieldDefinition", on_delete=models.CASCADE, related_name="mapping"
    )
    target_key = models.CharField(
        max_length=64,
        blank=True,
        help_text="The entry_values key on journal entries; empty when ignored.",
    )
    ignored = models.BooleanField(default=False)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["definition_id"]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(ignored=True, target_key="") | ~models.Q(target_key="")),
                name="customfieldmapping_target_or_ignored",
            )
        ]

    def __str__(self) -> str:
        return f"custom field {self.definition_id} → {self.target_key or 'ignored'}"


class CustomFieldMappingChange(models.Model):
    """Who changed a custom-field mapping, when, from what to what. Append-only."""

    definition = models.ForeignKey(
        "ledger_sync.CustomFieldDefinition",
        on_delete=models.CASCADE,
        related_name="mapping_changes",
    )
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    changed_at = models.DateTimeField()
    before = models.JSONField(null=True, blank=True, help_text="null when newly mapped.")
    after = models.JSONField()

    class Meta:
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"custom field {self.definition_id} mapping changed {self.changed_at:%Y-%m-%d}"


class CounterpartyMatching(Counterparty):
    """The admin's matching page: ATLAS counterparties seen with their ERP candidates."""

    class Meta:
        proxy = True
        verbose_name = "counterparty matching"
        verbose_name_plural = "counterparty matching"
