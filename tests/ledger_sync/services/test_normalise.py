"""Normalising the identifiers counterparties are matched on."""

from __future__ import annotations

import pytest

from ledger_sync.services.normalise import (
    bic_validate,
    iban_compact,
    iban_mask,
    iban_validate,
    legal_name_normalise,
    vat_normalise,
    vat_validate,
)


@pytest.mark.parametrize(
    "written",
    ["DE129273398", "DE 129 273 398", "de129.273.398", "DE-129-273-398", " DE 129.273.398 "],
)
def test_vat_with_country_prefix_spaces_and_dots_normalises_to_one_form(written):
    vat = vat_normalise(written)
    assert vat is not None
    assert (vat.full, vat.is_valid) == ("DE129273398", True)


def test_vat_without_prefix_takes_the_country_of_the_hint():
    vat = vat_normalise("129 273 398", country_hint="DE")
    assert (vat.country, vat.full) == ("DE", "DE129273398")


def test_vat_without_prefix_and_without_hint_keeps_the_bare_number():
    vat = vat_normalise("129.273.398")
    assert (vat.country, vat.number, vat.full) == ("", "129273398", "129273398")


def test_greek_iban_country_hints_the_el_vat_prefix():
    vat = vat_normalise("094259216", country_hint="GR")
    assert vat.full == "EL094259216"


def test_vat_with_wrong_check_digit_is_refused_with_the_country_named():
    with pytest.raises(ValueError, match="not a valid DE VAT number"):
        vat_validate("DE 129 273 399")


def test_empty_vat_is_none():
    assert vat_normalise("") is None
    assert vat_normalise(None) is None


def test_iban_with_spaces_normalises_to_compact():
    assert iban_compact("de89 3704 0044 0532 0130 00") == "DE89370400440532013000"
    assert iban_validate("DE89 3704 0044 0532 0130 00") == "DE89370400440532013000"


def test_iban_with_wrong_checksum_is_refused_without_showing_it_in_full():
    with pytest.raises(ValueError) as excinfo:
        iban_validate("DE89 3704 0044 0532 0130 01")
    message = str(excinfo.value)
    assert "checksum" in message
    assert "DE89370400440532013001" not in message
    assert iban_mask("DE89370400440532013001") in message


def test_bic_of_8_and_11_characters_is_accepted_and_a_malformed_one_refused():
    assert bic_validate("cobade ff") == "COBADEFF"
    assert bic_validate("COBADEFFXXX") == "COBADEFFXXX"
    with pytest.raises(ValueError, match="SWIFT/BIC"):
        bic_validate("COBA1EFF")


@pytest.mark.parametrize(
    ("name", "normalised"),
    [
        ("Energy Trader GmbH", "energy trader"),
        ("ENERGY TRADER G.m.b.H.", "energy trader"),
        ("Energy Trader GmbH & Co. KG", "energy trader"),
        ("Rhein Energie AG", "rhein energie"),
        ("Thames Power Ltd.", "thames power"),
        ("Thames Power Limited", "thames power"),
        ("Iberluz S.A.", "iberluz"),
        ("Polder Power B.V.", "polder power"),
        ("Energia Padana S.p.A.", "energia padana"),
        ("Wisła Energia Sp. z o.o.", "wisla energia"),
        ("Jylland Wind A/S", "jylland wind"),
        ("Énergie Loire SAS", "energie loire"),
    ],
)
def test_legal_forms_accents_and_punctuation_are_normalised_away(name, normalised):
    assert legal_name_normalise(name) == normalised


def test_a_name_made_only_of_a_legal_form_is_kept():
    assert legal_name_normalise("AG") == "ag"
