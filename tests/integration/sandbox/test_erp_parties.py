"""The generated ERP party register: deterministic, valid, and in step with the shipped sample."""

from __future__ import annotations

import csv

from integration.sandbox.atlas_seed import build_atlas_dataset
from integration.sandbox.erp_parties import (
    COLUMNS,
    SAMPLE_CSV,
    build_erp_register,
    synthetic_counterparties,
)
from ledger_sync.services.erp_parties import erp_party_values_clean


def _default_register():
    dataset = build_atlas_dataset(seed=2026, orders=120)
    return build_erp_register(dataset.counterparties.values(), seed=2026)


def test_the_shipped_sample_is_what_the_generator_makes_for_the_default_sandbox():
    with SAMPLE_CSV.open(encoding="utf-8") as handle:
        shipped = list(csv.DictReader(handle))
    generated = _default_register().parties
    assert [row["code"] for row in shipped] == [party["code"] for party in generated]
    assert [row["legal_name"] for row in shipped] == [party["legal_name"] for party in generated]
    assert list(shipped[0]) == list(COLUMNS)


def test_every_generated_party_passes_import_validation():
    register = build_erp_register(synthetic_counterparties(seed=3, count=300), seed=3)
    for party in register.parties:
        _clean, problems = erp_party_values_clean({**party, "active": "true"})
        assert problems == {}, party


def test_the_register_has_every_kind_of_near_miss_and_orphans_on_both_sides():
    register = build_erp_register(synthetic_counterparties(seed=1, count=500), seed=1)
    assert set(register.variant.values()) >= {
        "exact",
        "name_typo",
        "legal_form_variant",
        "vat_reformatted",
        "iban_spaces",
        "vat_missing",
        "vat_missing_new_bank",
        "typo_vat_missing",
        "renamed_same_vat",
        "no_counterpart",
    }
    assert register.erp_only
    assert any(code is None for code in register.truth.values())


def test_same_seed_same_register():
    counterparties = synthetic_counterparties(seed=5, count=50)
    first = build_erp_register(counterparties, seed=5)
    second = build_erp_register(counterparties, seed=5)
    assert first.parties == second.parties
    assert first.truth == second.truth


def test_one_external_id_is_left_unknown_to_the_erp():
    register = _default_register()
    unknown = [cid for cid, variant in register.variant.items() if variant == "external_id_unknown"]
    assert len(unknown) == 1
    codes = {party["code"] for party in register.parties}
    assert register.truth[unknown[0]] not in codes
