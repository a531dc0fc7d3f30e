"""Matching quality on a generated sandbox whose generator knows the truth.

    .venv/bin/python benchmarks/matching.py [--count 600] [--seed 2026]

Builds ATLAS counterparties (valid EU VAT numbers and IBANs) and an ERP party register full of
near-misses (typos, legal-form variants, reformatted or missing VAT numbers, IBANs with spaces,
sister companies with look-alike names, counterparties with no ERP party), runs the matching
engine and prints, first line first:

1. the share of counterparties with an ERP party whose true party is proposed first (goal >= 95%);
2. the share of first proposals that are wrong yet scored at or above the auto-suggest
   threshold (goal 0%);
then how many true matches reach the threshold, a breakdown per near-miss kind and the time.
Runs without a database.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

import django

django.setup()

from integration.sandbox.erp_parties import (  # noqa: E402
    build_erp_register,
    synthetic_counterparties,
)
from ledger_sync.services.match_engine import (  # noqa: E402
    CounterpartyRecord,
    PartyIndex,
    PartyRecord,
    auto_suggest_score,
)


def main() -> int:
    parser = argparse.ArgumentParser(description="Counterparty matching quality")
    parser.add_argument("--count", type=int, default=600, help="ATLAS counterparties (>= 500)")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    if args.count < 500:
        parser.error("the benchmark needs at least 500 counterparties")

    counterparties = synthetic_counterparties(seed=args.seed, count=args.count)
    register = build_erp_register(counterparties, seed=args.seed)
    threshold = auto_suggest_score()

    started = time.perf_counter()
    index = PartyIndex(
        PartyRecord(code=p["code"], legal_name=p["legal_name"], vat=p["vat"], iban=p["iban"])
        for p in register.parties
        if p["active"]
    )
    first: dict[int, tuple[str, int] | None] = {}
    for cp in counterparties:
        candidates = index.candidates(
            CounterpartyRecord(
                key=cp["id"],
                name=cp["name"],
                legal_name=cp["legalName"],
                vat=cp["vat"],
                iban=cp["iban"],
            )
        )
        first[cp["id"]] = (candidates[0].code, candidates[0].score) if candidates else None
    elapsed = time.perf_counter() - started

    with_party = [cid for cid, code in register.truth.items() if code is not None]
    true_first = [cid for cid in with_party if first[cid] and first[cid][0] == register.truth[cid]]
    proposed = [cid for cid, top in first.items() if top is not None]
    wrong_above = [
        cid
        for cid in proposed
        if first[cid][0] != register.truth[cid] and first[cid][1] >= threshold
    ]

    print(
        f"true ERP party proposed first: {_pct(len(true_first), len(with_party))} "
        f"({len(true_first)} of {len(with_party)} counterparties that have an ERP party)"
    )
    print(
        f"wrong first proposals at or above the auto-suggest threshold ({threshold}): "
        f"{_pct(len(wrong_above), len(proposed))} ({len(wrong_above)} of {len(proposed)} "
        "first proposals)"
    )
    strong = [cid for cid in true_first if first[cid][1] >= threshold]
    print(
        f"true first and strong enough to auto-suggest: {_pct(len(strong), len(with_party))} "
        "(the rest is right but needs a look: only a name, or only a VAT number, agrees)"
    )
    print(
        f"{len(counterparties)} ATLAS counterparties, {len(register.parties)} ERP parties "
        f"({len(register.erp_only)} without counterpart), matched in {elapsed:.2f} s"
    )
    totals, hits = Counter(register.variant.values()), Counter()
    for cid, variant in register.variant.items():
        truth = register.truth[cid]
        top = first[cid]
        if truth is None:
            hits[variant] += int(top is None or top[1] < threshold)
        else:
            hits[variant] += int(top is not None and top[0] == truth)
    for variant in sorted(totals):
        meaning = "below threshold" if variant == "no_counterpart" else "true first"
        print(f"  {variant:<22} {_pct(hits[variant], totals[variant]):>7} {meaning}")
    return 0


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


if __name__ == "__main__":
    sys.exit(main())
