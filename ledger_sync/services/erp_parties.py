"""Importing the ERP party register (CSV or XLSX) with django-import-export.

Validation lives here, not in the admin: every row is normalised (VAT number and IBAN to their
compact forms, role and active read leniently) and checked (VAT format and check digit, IBAN
checksum, a code used twice in one file). A bad row is reported with one clear message per
field; the admin's preview (django-import-export's dry run) shows new, changed and invalid rows
before anything is saved, and refuses to import a file with invalid rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from import_export import fields, resources, widgets

from ledger_sync.models import ErpParty
from ledger_sync.services.normalise import iban_country, iban_validate, vat_validate

_TRUE = {"1", "true", "yes", "y", "active", "x"}
_FALSE = {"0", "false", "no", "n", "inactive"}
_ROLE_ALIASES = {
    "customer": ErpParty.Role.CUSTOMER,
    "debtor": ErpParty.Role.CUSTOMER,
    "vendor": ErpParty.Role.VENDOR,
    "supplier": ErpParty.Role.VENDOR,
    "creditor": ErpParty.Role.VENDOR,
    "both": ErpParty.Role.BOTH,
    "customer and vendor": ErpParty.Role.BOTH,
}


def erp_party_values_clean(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Normalise one register row; returns (clean values, {field: problem})."""
    clean: dict[str, Any] = {}
    problems: dict[str, str] = {}

    code = _text(values.get("code"))
    if not code:
        problems["code"] = "Code is empty; every ERP party needs its billing account number."
    clean["code"] = code

    legal_name = _text(values.get("legal_name"))
    if not legal_name:
        problems["legal_name"] = "Legal name is empty."
    clean["legal_name"] = legal_name

    iban = _text(values.get("iban"))
    clean["iban"] = ""
    if iban:
        try:
            clean["iban"] = iban_validate(iban)
        except ValueError as exc:
            problems["iban"] = str(exc)

    vat = _text(values.get("vat"))
    clean["vat"] = ""
    if vat:
        try:
            # Without a country prefix, the IBAN's country tells which VAT rules apply.
            clean["vat"] = vat_validate(vat, country_hint=iban_country(iban))
        except ValueError as exc:
            problems["vat"] = str(exc)

    role = _text(values.get("role")).lower()
    if not role:
        clean["role"] = ErpParty.Role.BOTH
    elif role in _ROLE_ALIASES:
        clean["role"] = _ROLE_ALIASES[role]
    else:
        problems["role"] = f"Role {role!r} is not one of customer, vendor, both."

    active = _text(values.get("active")).lower()
    if not active or active in _TRUE:
        clean["active"] = True
    elif active in _FALSE:
        clean["active"] = False
    else:
        problems["active"] = f"Active {active!r} is not one of true/false, yes/no, 1/0."
    return clean, problems


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        # Spreadsheets turn a numeric code into 100001.0.
        value = int(value)
    return str(value).strip()


class _RawWidget(widgets.Widget):
    """Hands the cell over untouched; erp_party_values_clean reads it."""

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> Any:
        return value

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> Any:
        if isinstance(value, bool):
            return "true" if value else "false"
        return "" if value is None else value


class ErpPartyResource(resources.ModelResource):
    """Columns: code, legal_name, vat, iban, role, active (the sample file's header)."""

    code = fields.Field(attribute="code", column_name="code", widget=_RawWidget())
    legal_name = fields.Field(attribute="legal_name", column_name="legal_name", widget=_RawWidget())
    vat = fields.Field(attribute="vat", column_name="vat", widget=_RawWidget())
    iban = fields.Field(attribute="iban", column_name="iban", widget=_RawWidget())
    role = fields.Field(attribute="role", column_name="role", widget=_RawWidget())
    active = fields.Field(attribute="active", column_name="active", widget=_RawWidget())

    class Meta:
        model = ErpParty
        import_id_fields = ("code",)
        fields = ("code", "legal_name", "vat", "iban", "role", "active")
        export_order = ("code", "legal_name", "vat", "iban", "role", "active")
        skip_unchanged = True
        report_skipped = True
        clean_model_instances = True
        use_transactions = True

    def before_import(self, dataset: Any, **kwargs: Any) -> None:
        self._codes_in_file: dict[str, int] = {}
        missing = [c for c in ("code", "legal_name") if c not in (dataset.headers or [])]
        if missing:
            raise ValidationError(
                f"The file has no column {', '.join(missing)}; the header must be "
                "code, legal_name, vat, iban, role, active."
            )

    def before_import_row(self, row: Any, **kwargs: Any) -> None:
        # The code is the key the row is looked up by: compare it without stray spaces.
        if row.get("code") is not None:
            row["code"] = _text(row["code"])

    def import_instance(self, instance: ErpParty, row: Any, **kwargs: Any) -> None:
        clean, problems = erp_party_values_clean({name: row.get(name) for name in self.fields})
        code = clean["code"]
        row_number = kwargs.get("row_number")
        if code:
            first = getattr(self, "_codes_in_file", {}).setdefault(code, row_number)
            if first != row_number:
                problems["code"] = f"Code {code} appears twice in the file (first in row {first})."
        for name, value in clean.items():
            if name not in problems:
                setattr(instance, name, value)
        if problems:
            raise ValidationError(
                {name: ValidationError(text, code="invalid") for name, text in problems.items()}
            )
