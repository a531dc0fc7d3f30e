"""Records the browser scenarios start from, shared between them."""

from __future__ import annotations

from typing import Any

from integration import wire
from ledger_sync.models import Counterparty
from tests.factories.atlas import CounterpartyFactory


def sandbox_counterparty_without_code(atlas_sandbox: Any, **fields: Any) -> Counterparty:
    """The first ATLAS sandbox counterparty with no externalId yet, as the mirror holds it (so
    that writing its ERP code back reaches a real ATLAS record); `fields` override the mirror's
    columns."""
    atlas_id, record = next(
        (cid, cp)
        for cid, cp in sorted(atlas_sandbox.app.dataset.counterparties.items())
        if not cp["externalId"]
    )
    mirrored = dict(
        atlas_id=atlas_id,
        name=record["name"],
        legal_name=record["legalName"] or "",
        external_id=None,
        vat=record["vat"] or "",
        gl_account=record["glAccount"] or "",
        iban=record["iban"] or "",
        swift_bic=record["swiftBic"] or "",
        raw_json=wire.dumps(record),
    )
    return CounterpartyFactory(**{**mirrored, **fields})
