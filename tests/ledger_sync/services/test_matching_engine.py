"""The matching engine on plain records (no database): scores, reasons and ordering."""

from __future__ import annotations

from ledger_sync.services.match_engine import CounterpartyRecord, PartyIndex, PartyRecord

VAT = "DE129273398"
IBAN = "DE89370400440532013000"


def _cp(**kwargs):
    defaults = {"key": 42, "name": "Energy Trader", "legal_name": "Energy Trader GmbH"}
    return CounterpartyRecord(**{**defaults, **kwargs})


def test_equal_vat_beats_equal_iban_beats_similar_name():
    index = PartyIndex(
        [
            PartyRecord(code="NAME", legal_name="Energy Trader AG"),
            PartyRecord(code="IBAN", legal_name="Something Else GmbH", iban=IBAN),
            PartyRecord(code="VAT", legal_name="Totally Different Ltd", vat=VAT),
        ]
    )
    candidates = index.candidates(_cp(vat=VAT, iban=IBAN), limit=3)
    assert [c.code for c in candidates] == ["VAT", "IBAN", "NAME"]


def test_vat_reformatted_or_without_prefix_in_the_erp_still_matches():
    index = PartyIndex(
        [
            PartyRecord(code="DOTS", legal_name="A", vat="DE 129.273.398"),
            PartyRecord(code="BARE", legal_name="B", vat="129273398"),
        ]
    )
    candidates = {c.code: c for c in index.candidates(_cp(vat="de129273398"))}
    assert candidates["DOTS"].reasons[0].text == f"VAT {VAT} equal"
    assert candidates["BARE"].reasons[0].code == "vat_number_equal"
    assert candidates["DOTS"].score > candidates["BARE"].score


def test_iban_with_spaces_matches_and_the_reason_masks_it():
    index = PartyIndex(
        [PartyRecord(code="P", legal_name="Other", iban="DE89 3704 0044 0532 0130 00")]
    )
    (candidate,) = index.candidates(_cp(iban=IBAN))
    assert candidate.reasons[0].code == "iban_equal"
    assert IBAN not in candidate.reasons_text
    assert "DE89…3000" in candidate.reasons_text


def test_name_reason_says_how_similar_after_removing_legal_forms():
    index = PartyIndex([PartyRecord(code="P", legal_name="ENERGY TRAIDER LIMITED")])
    (candidate,) = index.candidates(_cp())
    assert candidate.reasons[0].code == "name_similar"
    assert "% similar after removing legal forms" in candidate.reasons[0].text


def test_equal_name_after_removing_legal_forms_says_equal():
    index = PartyIndex([PartyRecord(code="P", legal_name="Energy Trader S.p.A.")])
    (candidate,) = index.candidates(_cp())
    assert candidate.reasons[0].text == "legal name equal after removing legal forms"


def test_different_vat_numbers_push_a_look_alike_below_a_weaker_true_match():
    sister = PartyRecord(code="SISTER", legal_name="Energy Trader GmbH", vat="DE811907980")
    true_party = PartyRecord(code="TRUE", legal_name="Energy Trader Gmbh", iban=IBAN)
    candidates = PartyIndex([sister, true_party]).candidates(_cp(vat=VAT, iban=IBAN))
    assert [c.code for c in candidates] == ["TRUE", "SISTER"]
    assert candidates[1].score == 0
    assert "VAT differs" in candidates[1].reasons_text


def test_a_name_alone_never_reaches_the_auto_suggest_threshold(settings):
    index = PartyIndex([PartyRecord(code="P", legal_name="Energy Trader GmbH")])
    (candidate,) = index.candidates(_cp())
    assert candidate.score < settings.ERP_MATCH_AUTO_SUGGEST_SCORE


def test_ties_are_ordered_by_name_similarity_then_code():
    index = PartyIndex(
        [
            PartyRecord(code="B", legal_name="Energy Trader", vat=VAT),
            PartyRecord(code="A", legal_name="Energy Trader", vat=VAT),
            PartyRecord(code="C", legal_name="Energy Traders Group", vat=VAT),
        ]
    )
    assert [c.code for c in index.candidates(_cp(vat=VAT))] == ["A", "B", "C"]


def test_excluded_codes_are_never_proposed():
    index = PartyIndex([PartyRecord(code="X", legal_name="Energy Trader", vat=VAT)])
    assert index.candidates(_cp(vat=VAT), exclude_codes={"X"}) == []


def test_unrelated_parties_are_not_candidates():
    index = PartyIndex([PartyRecord(code="X", legal_name="Baltic Wind Storage Oy")])
    assert index.candidates(_cp()) == []


def test_an_invalid_vat_on_either_side_proves_nothing_either_way():
    index = PartyIndex([PartyRecord(code="P", legal_name="Energy Trader GmbH", vat=VAT)])
    (candidate,) = index.candidates(_cp(vat="n/a"))
    assert [r.code for r in candidate.reasons] == ["name_similar"]
    (candidate,) = index.candidates(_cp(vat="DE129273399"))  # wrong check digit
    assert [r.code for r in candidate.reasons] == ["name_similar"]
