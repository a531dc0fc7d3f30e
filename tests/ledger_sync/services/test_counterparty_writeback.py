"""Writing ERP codes and master-data corrections to ATLAS with Counterparty/Post, over real HTTP
against the ATLAS sandbox."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied

from integration import wire
from ledger_sync.errors import ApplicationError
from ledger_sync.models import (
    CounterpartyMapping,
    MasterDataCorrection,
    RecordChange,
    WriteBackState,
)
from ledger_sync.services.counterparty_writeback import (
    counterparty_mappings_write_back,
    master_data_correction_approve,
    master_data_correction_request,
)
from ledger_sync.services.matching import counterparty_create_erp_party, match_proposal_approve
from tests.factories.atlas import CounterpartyFactory
from tests.factories.parties import (
    CounterpartyMappingFactory,
    ErpPartyFactory,
    MatchProposalFactory,
    accountant,
    finance_lead,
)
from tests.factories.reference import GLAccountFactory

pytestmark = pytest.mark.django_db

POST = "/api/Counterparty/Post"


def _mirrored(sandbox, atlas_id):
    """The sandbox's counterparty as the mirror would hold it."""
    record = sandbox.app.dataset.counterparties[atlas_id]
    return CounterpartyFactory(
        atlas_id=atlas_id,
        name=record["name"],
        legal_name=record["legalName"] or "",
        external_id=record["externalId"],
        vat=record["vat"] or "",
        gl_account=record["glAccount"] or "",
        iban=record["iban"] or "",
        swift_bic=record["swiftBic"] or "",
        raw_json=wire.dumps(record),
    )


def _without_external_id(sandbox, n):
    ids = [
        cid
        for cid, cp in sorted(sandbox.app.dataset.counterparties.items())
        if not cp["externalId"]
    ]
    return ids[:n]


def _whole(sandbox, atlas_id: int, **changes) -> dict:
    """The counterparty record as the sandbox held it when mirrored, `changes` applied."""
    return {**sandbox.app.dataset.counterparties[atlas_id], **changes}


def test_approval_sends_exactly_one_batched_post_with_the_codes(atlas_sandbox):
    lead = finance_lead()
    ids = _without_external_id(atlas_sandbox, 3)
    proposals = [
        MatchProposalFactory(
            counterparty=_mirrored(atlas_sandbox, atlas_id),
            erp_party=ErpPartyFactory(code=f"BA-{900000 + atlas_id}"),
        )
        for atlas_id in reversed(ids)
    ]
    atlas_sandbox.app.reset_calls()

    result = match_proposal_approve(proposals=proposals, user=lead)

    posts = atlas_sandbox.app.calls_to(POST)
    assert len(posts) == 1
    # The whole record as mirrored, not only the field that changes: ATLAS's upsert may blank
    # what a record does not mention.
    assert posts[0].body == {
        "data": [
            _whole(atlas_sandbox, atlas_id, externalId=f"BA-{900000 + atlas_id}")
            for atlas_id in ids
        ]
    }
    assert all(len(record) > 5 for record in posts[0].body["data"])
    assert posts[0].status == 200
    assert result.write_back.written == 3
    for atlas_id in ids:
        assert atlas_sandbox.app.dataset.counterparties[atlas_id]["externalId"] == (
            f"BA-{900000 + atlas_id}"
        )
    assert set(CounterpartyMapping.objects.values_list("write_back_state", flat=True)) == {
        WriteBackState.WRITTEN
    }


def test_atlas_answer_is_mirrored_back_and_shows_in_the_history(atlas_sandbox):
    (atlas_id,) = _without_external_id(atlas_sandbox, 1)
    counterparty = _mirrored(atlas_sandbox, atlas_id)
    proposal = MatchProposalFactory(
        counterparty=counterparty, erp_party=ErpPartyFactory(code="BA-7")
    )

    match_proposal_approve(proposals=[proposal], user=finance_lead())

    counterparty.refresh_from_db()
    assert counterparty.external_id == "BA-7"
    assert counterparty.raw["externalId"] == "BA-7"
    change = RecordChange.objects.get(entity="Counterparty", remote_id=str(atlas_id))
    assert change.source == "write_back"
    assert change.changes == {"externalId": [None, "BA-7"]}
    mapping = CounterpartyMapping.objects.get(counterparty=counterparty)
    assert mapping.written_back_at is not None
    assert mapping.last_error == ""


def test_many_mappings_go_out_in_batches_of_the_configured_size(atlas_sandbox, settings):
    settings.ATLAS_BATCH_SIZE = 2
    for atlas_id in _without_external_id(atlas_sandbox, 5):
        CounterpartyMappingFactory(
            counterparty=_mirrored(atlas_sandbox, atlas_id),
            erp_party=ErpPartyFactory(code=f"BA-{atlas_id}"),
        )
    atlas_sandbox.app.reset_calls()

    result = counterparty_mappings_write_back()

    assert [len(call.body["data"]) for call in atlas_sandbox.app.calls_to(POST)] == [2, 2, 1]
    assert result.written == 5


def test_a_refused_write_is_recorded_on_the_mapping_and_retried_later(atlas_sandbox):
    (atlas_id,) = _without_external_id(atlas_sandbox, 1)
    counterparty = _mirrored(atlas_sandbox, atlas_id)
    ghost = CounterpartyFactory(atlas_id=987654, external_id=None)
    CounterpartyMappingFactory(counterparty=counterparty, erp_party=ErpPartyFactory(code="BA-1"))
    CounterpartyMappingFactory(counterparty=ghost, erp_party=ErpPartyFactory(code="BA-2"))

    result = counterparty_mappings_write_back()

    assert (result.written, result.failed) == (0, 2)
    failed = CounterpartyMapping.objects.get(counterparty=ghost)
    assert failed.write_back_state == WriteBackState.FAILED
    assert "987654 does not exist" in failed.last_error
    assert failed.write_back_attempts == 1
    assert atlas_sandbox.app.dataset.counterparties[atlas_id]["externalId"] is None

    ghost.delete()
    retried = counterparty_mappings_write_back()
    assert retried.written == 1
    mapping = CounterpartyMapping.objects.get(counterparty=counterparty)
    assert (mapping.write_back_state, mapping.write_back_attempts) == (WriteBackState.WRITTEN, 2)


def test_an_external_id_already_in_atlas_is_not_overwritten(atlas_sandbox):
    counterparty = CounterpartyFactory(external_id="CUST-0001")
    CounterpartyMappingFactory(counterparty=counterparty, erp_party=ErpPartyFactory(code="BA-1"))
    atlas_sandbox.app.reset_calls()

    result = counterparty_mappings_write_back()

    assert result.failed == 1
    assert atlas_sandbox.app.calls_to(POST) == []
    assert "already holds externalId 'CUST-0001'" in CounterpartyMapping.objects.get().last_error


def test_a_code_conflicting_with_atlas_stays_failed_without_a_call_or_attempt_per_pass(
    atlas_sandbox,
):
    counterparty = CounterpartyFactory(external_id="CUST-0001")
    CounterpartyMappingFactory(counterparty=counterparty, erp_party=ErpPartyFactory(code="BA-1"))
    first = counterparty_mappings_write_back()
    recorded = CounterpartyMapping.objects.values(
        "write_back_state", "write_back_attempts", "last_error", "updated_at"
    ).get()
    atlas_sandbox.app.reset_calls()

    again = [counterparty_mappings_write_back() for _ in range(3)]

    assert atlas_sandbox.app.calls == []
    # Still failed, still reported each pass, but nothing rewritten: no attempt was made.
    assert (
        CounterpartyMapping.objects.values(
            "write_back_state", "write_back_attempts", "last_error", "updated_at"
        ).get()
        == recorded
    )
    assert (recorded["write_back_state"], recorded["write_back_attempts"]) == (
        WriteBackState.FAILED,
        1,
    )
    assert [(r.written, r.failed, r.errors) for r in again] == [(0, 1, first.errors)] * 3


def test_a_conflict_corrected_in_atlas_goes_out_with_the_next_pass(atlas_sandbox):
    (atlas_id,) = _without_external_id(atlas_sandbox, 1)
    counterparty = _mirrored(atlas_sandbox, atlas_id)
    counterparty.external_id = "CUST-OTHER"  # the mirror saw another code in ATLAS
    counterparty.save()
    CounterpartyMappingFactory(counterparty=counterparty, erp_party=ErpPartyFactory(code="BA-1"))
    assert counterparty_mappings_write_back().failed == 1
    counterparty.external_id = None  # a person cleared it in ATLAS; the mirror shows it
    counterparty.save()
    atlas_sandbox.app.reset_calls()

    result = counterparty_mappings_write_back()

    assert (result.written, result.failed) == (1, 0)
    assert [c.body for c in atlas_sandbox.app.calls_to(POST)] == [
        {"data": [_whole(atlas_sandbox, atlas_id, externalId="BA-1")]}
    ]
    mapping = CounterpartyMapping.objects.get()
    assert (mapping.write_back_state, mapping.write_back_attempts) == (WriteBackState.WRITTEN, 2)


def test_no_match_writes_the_new_code_back(atlas_sandbox, settings):
    settings.ERP_PARTY_CODE_PATTERN = "NEW-{number:04d}"
    (atlas_id,) = _without_external_id(atlas_sandbox, 1)
    counterparty = _mirrored(atlas_sandbox, atlas_id)
    atlas_sandbox.app.reset_calls()

    mapping = counterparty_create_erp_party(counterparty=counterparty, user=finance_lead())

    assert mapping.write_back_state == WriteBackState.WRITTEN
    assert [c.body for c in atlas_sandbox.app.calls_to(POST)] == [
        {"data": [_whole(atlas_sandbox, atlas_id, externalId="NEW-0001")]}
    ]


# --- master-data corrections --------------------------------------------------------------------


def test_correction_with_bad_iban_bic_and_unknown_gl_account_names_every_problem():
    counterparty = CounterpartyFactory()
    with pytest.raises(ApplicationError) as excinfo:
        master_data_correction_request(
            counterparty=counterparty,
            changes={
                "iban": "DE89 3704 0044 0532 0130 01",
                "swift_bic": "COBA1",
                "gl_account": "9999",
            },
            user=accountant(),
        )
    assert set(excinfo.value.details) == {"iban", "swift_bic", "gl_account"}
    assert "not in the Gotransverse chart" in excinfo.value.details["gl_account"]
    assert not MasterDataCorrection.objects.exists()


def test_only_erp_owned_fields_can_be_corrected():
    with pytest.raises(ApplicationError, match="vat"):
        master_data_correction_request(
            counterparty=CounterpartyFactory(), changes={"vat": "DE129273398"}, user=accountant()
        )


def test_an_accountant_requests_and_only_a_finance_lead_approves(atlas_sandbox):
    GLAccountFactory(number="4002")
    (atlas_id,) = _without_external_id(atlas_sandbox, 1)
    counterparty = _mirrored(atlas_sandbox, atlas_id)
    correction = master_data_correction_request(
        counterparty=counterparty,
        changes={"gl_account": "4002", "iban": "DE89 3704 0044 0532 0130 00"},
        user=accountant(),
        reason="New house bank",
    )
    assert correction.status == MasterDataCorrection.Status.DRAFT
    assert correction.after == {"gl_account": "4002", "iban": "DE89370400440532013000"}

    with pytest.raises(PermissionDenied):
        master_data_correction_approve(
            corrections=[correction], user=accountant(username="second_clerk")
        )
    atlas_sandbox.app.reset_calls()

    lead = finance_lead()
    result = master_data_correction_approve(corrections=[correction], user=lead)

    assert result.written == 1
    (post,) = atlas_sandbox.app.calls_to(POST)
    assert post.body == {
        "data": [_whole(atlas_sandbox, atlas_id, glAccount="4002", iban="DE89370400440532013000")]
    }
    correction.refresh_from_db()
    assert (correction.status, correction.approved_by) == (MasterDataCorrection.Status.PUSHED, lead)
    assert correction.atlas_answer["glAccount"] == "4002"
    counterparty.refresh_from_db()
    assert (counterparty.gl_account, counterparty.iban) == ("4002", "DE89370400440532013000")
    change = RecordChange.objects.get(remote_id=str(atlas_id), source="write_back")
    assert change.changes["glAccount"][1] == "4002"
    assert change.changes["iban"][1] == "DE89…3000"  # history never shows a full IBAN


def test_a_correction_is_approved_once():
    GLAccountFactory(number="4002")
    correction = master_data_correction_request(
        counterparty=CounterpartyFactory(gl_account="4001"),
        changes={"gl_account": "4002"},
        user=accountant(),
    )
    lead = finance_lead()
    master_data_correction_approve(corrections=[correction], user=lead, push=False)
    with pytest.raises(ApplicationError, match="only a draft"):
        master_data_correction_approve(corrections=[correction], user=lead, push=False)
