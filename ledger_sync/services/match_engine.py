"""The matching engine, pure: plain records in, scored candidates out (no database), so the
benchmark and the tests run it on their own.

Scoring, out of 100, every point with a reason a person can read:
- the same VAT number after normalisation: 60 (55 when the ERP wrote it without country prefix);
- two different VAT numbers: -50 (two VAT numbers are two legal entities, whatever the names say);
- the same IBAN: 40;
- the legal names after removing legal forms: up to 35, in proportion to their similarity.
So a VAT number outweighs an IBAN, which outweighs a name. A candidate at or above
ERP_MATCH_AUTO_SUGGEST_SCORE (default 70) needs a VAT number or an IBAN to agree on top of a
similar name; a name alone never gets there, nor does a VAT number under a wholly other name.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from rapidfuzz import fuzz, process

from ledger_sync.services.normalise import (
    iban_compact,
    iban_country,
    iban_mask,
    legal_name_normalise,
    vat_normalise,
)

POINTS_VAT_EQUAL = 60


POINTS_VAT_NUMBER_EQUAL = 55


POINTS_VAT_DIFFERS = -50


POINTS_IBAN_EQUAL = 40


POINTS_NAME_MAX = 35


# Names less similar than this are not worth a person's time as a candidate.
NAME_SIMILARITY_FLOOR = 60


# How many name look-alikes to score per counterparty before keeping the best `limit`.
NAME_SHORTLIST = 10


@dataclass(frozen=True)
class PartyRecord:
    """What the engine needs of an ERP party."""

    code: str
    legal_name: str
    vat: str = ""
    iban: str = ""
    pk: int | None = None


@dataclass(frozen=True)
class CounterpartyRecord:
    """What the engine needs of an ATLAS counterparty."""

    key: Any
    name: str
    legal_name: str | None = None
    vat: str | None = None
    iban: str | None = None


@dataclass(frozen=True)
class Reason:
    code: str
    points: int
    text: str

    def as_json(self) -> dict[str, Any]:
        return {"code": self.code, "points": self.points, "text": self.text}


@dataclass(frozen=True)
class Candidate:
    party: PartyRecord
    score: int
    name_similarity: int
    reasons: tuple[Reason, ...]

    @property
    def code(self) -> str:
        return self.party.code

    @property
    def reasons_text(self) -> str:
        return "; ".join(reason.text for reason in self.reasons)


@dataclass(frozen=True)
class _PreparedParty:
    party: PartyRecord
    vat_full: str
    vat_number: str
    vat_valid: bool
    iban: str
    name_key: str


class PartyIndex:
    """ERP parties indexed by normalised VAT number, IBAN and legal name.

    Built once per matching pass; looking up one counterparty costs two dictionary reads and one
    rapidfuzz scan over the names, so thousands of counterparties match in seconds.
    """

    def __init__(self, parties: Iterable[PartyRecord]):
        self._parties: list[_PreparedParty] = []
        self._by_vat_full: dict[str, list[int]] = defaultdict(list)
        self._by_vat_number: dict[str, list[int]] = defaultdict(list)
        self._by_iban: dict[str, list[int]] = defaultdict(list)
        for party in parties:
            vat = vat_normalise(party.vat, country_hint=iban_country(party.iban))
            prepared = _PreparedParty(
                party=party,
                vat_full=vat.full if vat and vat.country else "",
                vat_number=vat.number if vat else "",
                vat_valid=bool(vat and vat.is_valid),
                iban=iban_compact(party.iban),
                name_key=_sorted_words(legal_name_normalise(party.legal_name)),
            )
            position = len(self._parties)
            self._parties.append(prepared)
            if prepared.vat_full:
                self._by_vat_full[prepared.vat_full].append(position)
            if prepared.vat_number:
                self._by_vat_number[prepared.vat_number].append(position)
            if prepared.iban:
                self._by_iban[prepared.iban].append(position)
        self._name_keys = [prepared.name_key for prepared in self._parties]

    def __len__(self) -> int:
        return len(self._parties)

    def candidates(
        self,
        counterparty: CounterpartyRecord,
        *,
        limit: int = 3,
        exclude_codes: frozenset[str] | set[str] = frozenset(),
    ) -> list[Candidate]:
        """The best `limit` ERP parties for the counterparty, best first.

        Ties are broken by name similarity, then by code, so the order is stable.
        """
        vat = vat_normalise(counterparty.vat, country_hint=iban_country(counterparty.iban))
        iban = iban_compact(counterparty.iban)
        names = {
            _sorted_words(legal_name_normalise(name))
            for name in (counterparty.legal_name, counterparty.name)
            if name and legal_name_normalise(name)
        }

        positions: set[int] = set()
        if vat and vat.country:
            positions.update(self._by_vat_full.get(vat.full, ()))
        if vat:
            positions.update(self._by_vat_number.get(vat.number, ()))
        if iban:
            positions.update(self._by_iban.get(iban, ()))
        for name in names:
            for _match, _similarity, position in process.extract(
                name,
                self._name_keys,
                scorer=fuzz.ratio,
                limit=NAME_SHORTLIST,
                score_cutoff=NAME_SIMILARITY_FLOOR,
            ):
                positions.add(position)

        scored = []
        for position in positions:
            prepared = self._parties[position]
            if prepared.party.code in exclude_codes:
                continue
            scored.append(_score(prepared, vat=vat, iban=iban, names=names))
        scored.sort(key=lambda c: (-c.score, -c.name_similarity, c.party.code))
        return scored[:limit]


def _score(prepared: _PreparedParty, *, vat: Any, iban: str, names: set[str]) -> Candidate:
    reasons: list[Reason] = []
    # Only two valid VAT numbers are compared: junk such as "n/a" or a typo proves nothing, and
    # must not cost a true candidate its place.
    if vat is not None and vat.is_valid and prepared.vat_valid:
        if vat.country and prepared.vat_full == vat.full:
            reasons.append(Reason("vat_equal", POINTS_VAT_EQUAL, f"VAT {vat.full} equal"))
        elif not prepared.vat_full and prepared.vat_number == vat.number:
            reasons.append(
                Reason(
                    "vat_number_equal",
                    POINTS_VAT_NUMBER_EQUAL,
                    f"VAT number {vat.number} equal (ERP record has no country prefix)",
                )
            )
        elif not vat.country and prepared.vat_number == vat.number:
            reasons.append(
                Reason(
                    "vat_number_equal",
                    POINTS_VAT_NUMBER_EQUAL,
                    f"VAT number {vat.number} equal (ATLAS record has no country prefix)",
                )
            )
        else:
            theirs = prepared.vat_full or prepared.vat_number
            reasons.append(
                Reason(
                    "vat_differs",
                    POINTS_VAT_DIFFERS,
                    f"VAT differs (ATLAS {vat.full}, ERP {theirs})",
                )
            )
    if iban and prepared.iban == iban:
        reasons.append(Reason("iban_equal", POINTS_IBAN_EQUAL, f"IBAN {iban_mask(iban)} equal"))

    similarity = 0
    for name in names:
        similarity = max(similarity, round(fuzz.ratio(name, prepared.name_key)))
    if similarity >= NAME_SIMILARITY_FLOOR:
        points = round(POINTS_NAME_MAX * similarity / 100)
        text = (
            "legal name equal after removing legal forms"
            if similarity == 100
            else f"legal name {similarity}% similar after removing legal forms"
        )
        reasons.append(Reason("name_similar", points, text))

    score = max(0, min(100, sum(reason.points for reason in reasons)))
    return Candidate(
        party=prepared.party, score=score, name_similarity=similarity, reasons=tuple(reasons)
    )


def _sorted_words(name: str) -> str:
    # Words sorted once here, so that plain fuzz.ratio gives token_sort_ratio's answer
    # ("Trader Energy" = "Energy Trader") without sorting every name again per comparison.
    return " ".join(sorted(name.split()))


def auto_suggest_score() -> int:
    return int(getattr(settings, "ERP_MATCH_AUTO_SUGGEST_SCORE", 70))
