"""Normalise the identifiers counterparties are matched on: VAT numbers, IBANs, BICs, legal names.

ATLAS and the ERP party register spell the same facts differently ("DE 129.273.398" vs
"DE129273398", an IBAN in groups of four, "Energy Trader GmbH" vs "ENERGY TRADER"). Matching
compares the normalised forms only. Checksums come from python-stdnum, not from hand-written
arithmetic.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from stdnum import bic as stdnum_bic
from stdnum import iban as stdnum_iban
from stdnum.eu import vat as stdnum_vat
from stdnum.exceptions import ValidationError as StdnumValidationError
from stdnum.util import clean

# Greece is "GR" in an IBAN but "EL" in a VAT number.
_VAT_PREFIX_FOR_IBAN_COUNTRY = {"GR": "EL"}

# Legal forms, written as they look once dots are removed and the text is lower-cased. They are
# stripped from the end of a name ("Energy Trader GmbH & Co. KG" -> "energy trader").
LEGAL_FORM_TOKENS = frozenset(
    {
        # German-speaking
        "gmbh", "ag", "kg", "kgaa", "ohg", "ug", "ev", "eg", "se", "co", "and", "mbh",
        # English
        "ltd", "limited", "plc", "llc", "llp", "lp", "inc", "incorporated", "corp",
        "corporation", "company", "cic",
        # Dutch, Belgian
        "bv", "nv", "vof", "cv", "bvba", "sprl", "srl",
        # French, Spanish, Portuguese
        "sa", "sas", "sasu", "sarl", "sca", "snc", "sl", "slu", "lda",
        # Italian
        "spa", "srls", "sapa", "scarl",
        # Nordic
        "ab", "publ", "as", "asa", "aps", "oy", "oyj", "hf", "ehf",
        # Central and Eastern Europe
        "sp", "z", "oo", "sro", "kft", "zrt", "nyrt", "doo", "dd", "ad", "ead", "ood",
        "sia", "uab", "ou",
    }
)  # fmt: skip
# Letters NFKD does not split into a base letter and an accent.
_TRANSLITERATE = str.maketrans(
    {"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "ß": "ss", "đ": "d",
     "Đ": "D", "œ": "oe", "Œ": "OE", "\u0131": "i", "þ": "th", "ð": "d"}
)  # fmt: skip
_PUNCTUATION = re.compile(r"[^\w\s]")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class VatNumber:
    """A VAT number after normalisation.

    `country` is empty when the number was written without a country prefix and no hint told
    which country it belongs to; `number` is then the bare national number.
    """

    country: str
    number: str
    is_valid: bool

    @property
    def full(self) -> str:
        """The comparable form: "DE129273398", or the bare number when the country is unknown."""
        return f"{self.country}{self.number}"


def vat_compact(value: str | None) -> str:
    """Upper-case, without spaces, dots, dashes or slashes ("de 129.273.398" -> "DE129273398")."""
    if not value:
        return ""
    compact = clean(value, " -./,:").upper().strip()
    if compact[:2].isalpha():
        try:
            # The country module knows its own quirks (e.g. a leading "0" in Belgium).
            return stdnum_vat.compact(compact)
        except StdnumValidationError:
            return compact
    return compact


def vat_normalise(value: str | None, *, country_hint: str = "") -> VatNumber | None:
    """Read a VAT number the way people write it: with or without the country prefix, with
    spaces and dots. A number without prefix takes `country_hint` (e.g. the IBAN's country) if
    the number is valid there. Returns None for an empty value."""
    compact = vat_compact(value)
    if not compact:
        return None
    if compact[:2].isalpha():
        country, number = compact[:2], compact[2:]
        return VatNumber(country=country, number=number, is_valid=_vat_is_valid(compact))
    hint = _VAT_PREFIX_FOR_IBAN_COUNTRY.get(country_hint.upper(), country_hint.upper())
    if hint and _vat_is_valid(hint + compact):
        return VatNumber(country=hint, number=compact, is_valid=True)
    return VatNumber(country="", number=compact, is_valid=bool(_vat_countries(compact)))


def vat_validate(value: str, *, country_hint: str = "") -> str:
    """The normalised VAT number, or ValueError saying what is wrong with it."""
    vat = vat_normalise(value, country_hint=country_hint)
    if vat is None:
        raise ValueError("VAT number is empty")
    if vat.country and not vat.is_valid:
        raise ValueError(
            f"VAT number {value!r} is not a valid {vat.country} VAT number "
            "(wrong length, format or check digit)"
        )
    if not vat.country and not vat.is_valid:
        raise ValueError(
            f"VAT number {value!r} has no country prefix and is not valid in any EU country"
        )
    return vat.full


def _vat_is_valid(compact: str) -> bool:
    try:
        stdnum_vat.validate(compact)
    except StdnumValidationError:
        return False
    return True


def _vat_countries(bare_number: str) -> list[str]:
    """EU countries in which a number without prefix would be a valid VAT number."""
    return [c.upper() for c in stdnum_vat.guess_country(bare_number)]


def iban_compact(value: str | None) -> str:
    """Upper-case, without spaces or dashes ("de89 3704 0044 ..." -> "DE8937040044...")."""
    if not value:
        return ""
    return stdnum_iban.compact(value)


def iban_validate(value: str) -> str:
    """The compact IBAN, or ValueError naming the problem (checksum, length, country)."""
    compact = iban_compact(value)
    if not compact:
        raise ValueError("IBAN is empty")
    try:
        stdnum_iban.validate(compact)
    except StdnumValidationError as exc:
        raise ValueError(
            f"IBAN {iban_mask(compact)} is not valid ({exc.message.lower().rstrip('.')})"
        ) from None
    return compact


def iban_country(value: str | None) -> str:
    compact = iban_compact(value)
    return compact[:2] if len(compact) >= 2 and compact[:2].isalpha() else ""


def iban_mask(value: str | None) -> str:
    """An IBAN safe to show in logs and errors: country, check digits and the last four."""
    compact = iban_compact(value)
    if len(compact) <= 8:
        return "****" if compact else ""
    return f"{compact[:4]}…{compact[-4:]}"


def bic_validate(value: str) -> str:
    """The compact BIC (8 or 11 characters), or ValueError."""
    compact = (value or "").replace(" ", "").upper()
    if not compact:
        raise ValueError("SWIFT/BIC is empty")
    try:
        return stdnum_bic.validate(compact)
    except StdnumValidationError:
        raise ValueError(
            f"SWIFT/BIC {value!r} is not valid: 4 letters (bank), 2 letters (country), "
            "2 letters or digits (location), optionally 3 more (branch)"
        ) from None


def legal_name_normalise(value: str | None) -> str:
    """Lower-case, without accents, punctuation or trailing legal forms.

    "Énergie Trading S.p.A." -> "energie trading"; "Nordic Power A/S" -> "nordic power".
    A name made only of legal-form words keeps them, so it does not become empty.
    """
    if not value:
        return ""
    text = unicodedata.normalize("NFKD", value.translate(_TRANSLITERATE))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.lower().replace("&", " and ")
    # Dots vanish ("s.p.a." -> "spa"); other punctuation separates words ("a/s" -> "a s").
    text = text.replace(".", "")
    text = _PUNCTUATION.sub(" ", text)
    tokens = _SPACES.split(text.strip())
    tokens = _join_split_forms(tokens)
    stripped = list(tokens)
    while stripped and stripped[-1] in LEGAL_FORM_TOKENS:
        stripped.pop()
    return " ".join(stripped or tokens)


def _join_split_forms(tokens: list[str]) -> list[str]:
    """Re-join legal forms that punctuation split into single letters ("a s" -> "as")."""
    joined: list[str] = []
    for token in tokens:
        if (
            joined
            and len(token) == 1
            and len(joined[-1]) == 1
            and (joined[-1] + token) in LEGAL_FORM_TOKENS
        ):
            joined[-1] += token
        else:
            joined.append(token)
    return joined
