"""The ERP party register (Gotransverse billing accounts) that goes with an ATLAS sandbox dataset,
and the truth about which party belongs to which counterparty.

Real registers never agree exactly with ATLAS, so this one does not either. For each ATLAS
counterparty the generator picks, deterministically from the seed, one of:

- exact: same legal name, VAT number and IBAN;
- name_typo: a letter swapped, dropped or doubled in the legal name;
- legal_form_variant: "GmbH" written "G.m.b.H.", "Limited" for "Ltd", the form left out, ...;
- vat_reformatted: VAT with spaces, dots, or without its country prefix;
- iban_spaces: IBAN in groups of four;
- vat_missing: no VAT number in the ERP (name and IBAN still agree);
- vat_missing_new_bank: no VAT number and a different IBAN (only the name is left to match on);
- typo_vat_missing: a typo in the name and no VAT number (IBAN, spaced, still agrees);
- renamed_same_vat: another name and another bank, the same VAT number;
- no_counterpart: the counterparty has no ERP party at all.
A counterparty whose `externalId` is set gets an ERP party with exactly that code (known code),
except one, left out so that the "unknown externalId" flag shows.

On top come ERP parties with no ATLAS counterpart: unrelated ones, and "sister companies" whose
name resembles a counterparty's but whose VAT number and IBAN differ, the classic wrong match.

Run `python -m integration.sandbox.erp_parties` to (re)write the sample file shipped in
integration/sandbox/data/ for the default sandbox seed.
"""

from __future__ import annotations

import argparse
import csv
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stdnum import iban as iban_check
from stdnum.eu import vat as vat_check

COLUMNS = ("code", "legal_name", "vat", "iban", "role", "active")
DATA_DIR = Path(__file__).resolve().parent / "data"
SAMPLE_CSV = DATA_DIR / "erp_parties.csv"
SAMPLE_WITH_ERRORS_CSV = DATA_DIR / "erp_parties_with_errors.csv"

# ATLAS counterparty type ids used by the sandbox: 1 customer, 2 supplier.
_ROLE_FOR_TYPE = {1: "customer", 2: "vendor"}

VARIANT_SHARES: tuple[tuple[str, float], ...] = (
    ("exact", 0.26),
    ("name_typo", 0.10),
    ("legal_form_variant", 0.10),
    ("vat_reformatted", 0.10),
    ("iban_spaces", 0.07),
    ("vat_missing", 0.08),
    ("vat_missing_new_bank", 0.05),
    ("typo_vat_missing", 0.06),
    ("renamed_same_vat", 0.06),
    ("no_counterpart", 0.12),
)

# Spellings of the same legal form; a variant swaps one for another (or drops it).
_LEGAL_FORM_SPELLINGS: tuple[tuple[str, ...], ...] = (
    ("GmbH", "G.m.b.H.", "Gmbh", "GMBH"),
    ("AG", "A.G."),
    ("GmbH & Co. KG", "GmbH & Co KG", "GmbH u. Co. KG"),
    ("S.A.", "SA", "S.A"),
    ("B.V.", "BV", "B.V"),
    ("N.V.", "NV"),
    ("S.p.A.", "SpA", "S.P.A."),
    ("S.r.l.", "Srl", "S.R.L."),
    ("SAS", "S.A.S."),
    ("SARL", "S.A.R.L.", "Sarl"),
    ("S.L.", "SL", "S.L"),
    ("Sp. z o.o.", "Sp. z.o.o.", "sp. z o. o."),
    ("SRL", "S.R.L."),
    ("SE", "S.E."),
    ("Ltd", "Ltd.", "Limited", "LTD"),
    ("A/S", "AS", "A.S."),
    ("Oy", "OY"),
)


@dataclass
class ErpRegister:
    """The generated register and the truth behind it."""

    parties: list[dict[str, Any]] = field(default_factory=list)
    # ATLAS counterparty id -> the code of its ERP party (None: it has none).
    truth: dict[int, str | None] = field(default_factory=dict)
    # ATLAS counterparty id -> which near-miss it was given (see the module docstring).
    variant: dict[int, str] = field(default_factory=dict)
    # Codes of ERP parties that no ATLAS counterparty has.
    erp_only: list[str] = field(default_factory=list)


def build_erp_register(
    counterparties: Iterable[Mapping[str, Any]],
    *,
    seed: int,
    erp_only_share: float = 0.10,
    first_number: int = 100001,
) -> ErpRegister:
    """The ERP register for these ATLAS counterparties (raw wire dicts). Deterministic."""
    rng = random.Random(f"erp-parties-{seed}")
    register = ErpRegister()
    cps = sorted(counterparties, key=lambda cp: cp["id"])
    number = first_number
    used_codes = {cp["externalId"] for cp in cps if cp.get("externalId")}
    with_external_id = [cp for cp in cps if cp.get("externalId")]
    # One externalId stays unknown to the ERP, so the flag for a person shows in the demo.
    unknown_external = with_external_id[-1]["id"] if len(with_external_id) > 1 else None

    def next_code() -> str:
        nonlocal number
        while f"BA-{number:06d}" in used_codes:
            number += 1
        code = f"BA-{number:06d}"
        used_codes.add(code)
        number += 1
        return code

    for cp in cps:
        cp_id = cp["id"]
        legal_name = cp.get("legalName") or cp["name"]
        role = _role(cp, rng)
        if cp.get("externalId"):
            if cp_id == unknown_external:
                register.truth[cp_id] = cp["externalId"]
                register.variant[cp_id] = "external_id_unknown"
                continue
            register.parties.append(
                _party(cp["externalId"], legal_name, cp.get("vat"), cp.get("iban"), role)
            )
            register.truth[cp_id] = cp["externalId"]
            register.variant[cp_id] = "external_id"
            continue
        variant = _draw(rng, VARIANT_SHARES)
        register.variant[cp_id] = variant
        if variant == "no_counterpart":
            register.truth[cp_id] = None
            continue
        vat, iban, name = cp.get("vat") or "", cp.get("iban") or "", legal_name
        if variant == "name_typo":
            name = _typo(rng, legal_name)
        elif variant == "legal_form_variant":
            name = _legal_form_variant(rng, legal_name)
        elif variant == "vat_reformatted":
            vat = _reformat_vat(rng, vat)
        elif variant == "iban_spaces":
            iban = iban_check.format(iban) if iban else iban
        elif variant == "vat_missing":
            vat = ""
        elif variant == "vat_missing_new_bank":
            vat = ""
            iban = _iban(rng, iban[:2] if iban else "DE")
        elif variant == "typo_vat_missing":
            name = _typo(rng, legal_name)
            vat = ""
            iban = iban_check.format(iban) if iban else iban
        elif variant == "renamed_same_vat":
            # Renamed since the ERP record was made: only the VAT number still ties them.
            name = _company_name(rng, _country_of(cp))
            iban = _iban(rng, iban[:2] if iban else "DE")
        code = next_code()
        register.parties.append(_party(code, name, vat, iban, role))
        register.truth[cp_id] = code

    erp_only = max(1, round(len(cps) * erp_only_share)) if cps else 0
    for index in range(erp_only):
        code = next_code()
        if index % 2 == 0 and cps:
            # A sister company: the name of a counterparty with another place or form, and its
            # own VAT number and IBAN.
            base = rng.choice(cps)
            country = _country_of(base)
            name = _sister_name(rng, base.get("legalName") or base["name"])
            party = _party(code, name, _vat(rng, country), _iban(rng, country), "both")
        else:
            country = rng.choice(_COUNTRIES)
            party = _party(
                code,
                _company_name(rng, country),
                _vat(rng, country),
                _iban(rng, country),
                rng.choice(("customer", "vendor", "both")),
            )
        register.parties.append(party)
        register.erp_only.append(code)
    register.parties.sort(key=lambda party: party["code"])
    return register


def synthetic_counterparties(*, seed: int, count: int) -> list[dict[str, Any]]:
    """ATLAS counterparties (wire shape) in any number, for benchmarks beyond the sandbox's
    size: European companies with valid VAT numbers and IBANs, no externalId."""
    rng = random.Random(f"synthetic-counterparties-{seed}")
    names: set[str] = set()
    records = []
    for cp_id in range(1, count + 1):
        country = _COUNTRIES[cp_id % len(_COUNTRIES)]
        while True:
            legal_name = _company_name(rng, country)
            if legal_name not in names:
                names.add(legal_name)
                break
        records.append(
            {
                "id": cp_id,
                "name": legal_name.rsplit(" ", 1)[0],
                "legalName": legal_name,
                "externalId": None,
                "counterpartyTypeId": rng.choice((1, 2)),
                "vat": _vat(rng, country),
                "glAccount": None,
                "iban": _iban(rng, country),
                "swiftBic": None,
                "selfBilling": False,
                "customFieldValues": [],
            }
        )
    return records


def write_csv(parties: Sequence[Mapping[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for party in parties:
            writer.writerow({column: _cell(party[column]) for column in COLUMNS})
    return path


def write_xlsx(parties: Sequence[Mapping[str, Any]], path: Path) -> Path:
    from openpyxl import Workbook

    path.parent.mkdir(parents=True, exist_ok=True)
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "ERP parties"
    sheet.append(list(COLUMNS))
    for party in parties:
        sheet.append([_cell(party[column]) for column in COLUMNS])
    workbook.save(path)
    return path


def with_bad_rows(parties: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The register plus rows an import must refuse, one per kind of error: a VAT number with
    a wrong check digit, an IBAN with a wrong checksum, a code used twice in the file."""
    rows = [dict(party) for party in parties]
    first = rows[0]
    rows.append(
        _party("BA-900001", "Checksum Energie GmbH", "DE129273399", "", "customer")
    )  # DE VAT with its last digit changed
    rows.append(
        _party("BA-900002", "Broken Bank Power B.V.", "", "NL91ABNA0417164301", "vendor")
    )  # IBAN with its last digit changed
    rows.append(_party(first["code"], "Duplicate Code Trading AG", "", "", "both"))
    return rows


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _party(code: str, name: str, vat: str | None, iban: str | None, role: str) -> dict[str, Any]:
    return {
        "code": code,
        "legal_name": name,
        "vat": vat or "",
        "iban": iban or "",
        "role": role,
        "active": True,
    }


def _role(cp: Mapping[str, Any], rng: random.Random) -> str:
    if rng.random() < 0.1:
        return "both"
    return _ROLE_FOR_TYPE.get(cp.get("counterpartyTypeId"), "both")


def _draw(rng: random.Random, shares: Sequence[tuple[str, float]]) -> str:
    point = rng.random() * sum(share for _, share in shares)
    for name, share in shares:
        point -= share
        if point < 0:
            return name
    return shares[-1][0]


def _typo(rng: random.Random, name: str) -> str:
    """One typing slip inside the distinctive part of the name (not in the legal form)."""
    words = name.split(" ")
    candidates = [i for i, word in enumerate(words) if len(word) >= 5 and word.isalpha()]
    if not candidates:
        return name + "e"
    i = rng.choice(candidates)
    word = words[i]
    pos = rng.randrange(1, len(word) - 1)
    kind = rng.choice(("swap", "drop", "double"))
    if kind == "swap":
        word = word[: pos - 1] + word[pos] + word[pos - 1] + word[pos + 1 :]
    elif kind == "drop":
        word = word[:pos] + word[pos + 1 :]
    else:
        word = word[:pos] + word[pos] + word[pos:]
    words[i] = word
    return " ".join(words)


def _legal_form_variant(rng: random.Random, name: str) -> str:
    for spellings in sorted(_LEGAL_FORM_SPELLINGS, key=lambda s: -len(s[0])):
        for spelling in spellings:
            if name.endswith(" " + spelling):
                stem = name[: -len(spelling) - 1]
                others = [s for s in spellings if s != spelling]
                choice = rng.random()
                if choice < 0.25:
                    return stem  # the ERP left the legal form out
                if choice < 0.4:
                    return (stem + " " + rng.choice(others)).upper()
                return stem + " " + rng.choice(others)
    return name.upper()


def _reformat_vat(rng: random.Random, vat: str) -> str:
    if not vat:
        return vat
    country, number = vat[:2], vat[2:]
    style = rng.choice(("spaces", "dots", "no_prefix", "lower_dashes"))
    if style == "spaces":
        return country + " " + " ".join(number[i : i + 3] for i in range(0, len(number), 3))
    if style == "dots":
        return country + ".".join(number[i : i + 3] for i in range(0, len(number), 3))
    if style == "no_prefix":
        return number
    return (country + "-" + number).lower()


def _sister_name(rng: random.Random, name: str) -> str:
    words = name.split(" ")
    qualifier = rng.choice(("Trading", "Services", "Holding", "Nord", "Süd", "International"))
    if len(words) >= 2:
        return " ".join([*words[:-1], qualifier, words[-1]])
    return f"{name} {qualifier}"


# --- synthetic companies, VAT numbers and IBANs --------------------------------------------------


@dataclass(frozen=True)
class _Country:
    code: str
    iban_length: int
    legal_forms: tuple[str, ...]
    places: tuple[str, ...]


_COUNTRIES: tuple[_Country, ...] = (
    _Country("DE", 22, ("GmbH", "AG", "GmbH & Co. KG", "SE"), ("Rhein", "Elbe", "Harz", "Spree")),
    _Country("AT", 20, ("GmbH", "AG"), ("Donau", "Tauern", "Inntal", "Wiener")),
    _Country("NL", 18, ("B.V.", "N.V."), ("Polder", "Delta", "Maas", "Veluwe")),
    _Country("BE", 16, ("NV", "SA", "SRL"), ("Schelde", "Ardennes", "Brabant", "Kempen")),
    _Country("IT", 27, ("S.p.A.", "S.r.l."), ("Padana", "Adriatica", "Toscana", "Lombarda")),
    _Country("PL", 28, ("Sp. z o.o.", "S.A."), ("Wisla", "Baltyk", "Odra", "Tatry")),
    _Country("DK", 18, ("A/S",), ("Jylland", "Fyn", "Sjaelland", "Kattegat")),
    _Country("FI", 18, ("Oy",), ("Karelia", "Lappi", "Saimaa", "Pohjola")),
)
_NAME_HEADS = (
    "Nordic", "Alpine", "Baltic", "Atlantic", "Central", "Green", "Blue", "Northern", "Western",
    "Eastern", "Coastal", "Highland", "Valley", "River", "Summit", "Bright", "Clear", "Prime",
    "Union", "United", "Global", "Continental", "Metro", "Civic", "Solar", "Aurora", "Helios",
    "Boreal", "Vento", "Terra", "Aqua", "Volta", "Ampere", "Kelvin", "Tesla", "Faraday",
)  # fmt: skip
_NAME_CORES = (
    "Energy", "Power", "Gas", "Utilities", "Renewables", "Wind", "Solar", "Hydro", "Grid",
    "Trading", "Commodities", "Supply", "Generation", "Networks", "Storage", "Heat",
)  # fmt: skip
_NAME_TAILS = ("", "", "", "Trading", "Supply", "Markets", "Services", "Partners", "Systems")


def _company_name(rng: random.Random, country: _Country) -> str:
    parts = [rng.choice(_NAME_HEADS), rng.choice(country.places), rng.choice(_NAME_CORES)]
    if rng.random() < 0.5:
        parts.pop(1)
    tail = rng.choice(_NAME_TAILS)
    if tail and tail not in parts:
        parts.append(tail)
    parts.append(rng.choice(country.legal_forms))
    return " ".join(parts)


def _country_of(cp: Mapping[str, Any]) -> _Country:
    code = (cp.get("vat") or cp.get("iban") or "DE")[:2].upper()
    for country in _COUNTRIES:
        if country.code == code:
            return country
    return _COUNTRIES[0]


_VAT_BODIES = {
    "DE": lambda rng: str(rng.randint(1, 9)) + _digits(rng, 8),
    "AT": lambda rng: "U" + _digits(rng, 8),
    "NL": lambda rng: str(rng.randint(1, 9)) + _digits(rng, 8) + "B01",
    "BE": lambda rng: "0" + str(rng.randint(2, 9)) + _digits(rng, 8),
    "IT": lambda rng: _digits(rng, 7) + f"{rng.randint(1, 100):03d}" + _digits(rng, 1),
    "PL": lambda rng: str(rng.randint(1, 9)) + _digits(rng, 9),
    "DK": lambda rng: str(rng.randint(1, 9)) + _digits(rng, 7),
    "FI": lambda rng: _digits(rng, 8),
}


def _vat(rng: random.Random, country: _Country | str) -> str:
    """A valid VAT number: national digits drawn until python-stdnum accepts the check digit."""
    code = country if isinstance(country, str) else country.code
    make = _VAT_BODIES.get(code, _VAT_BODIES["DE"])
    code = code if code in _VAT_BODIES else "DE"
    for _ in range(20000):
        candidate = code + make(rng)
        if vat_check.is_valid(candidate):
            return candidate
    raise RuntimeError(f"could not draw a valid {code} VAT number")  # pragma: no cover


def _iban(rng: random.Random, country: _Country | str) -> str:
    """A valid IBAN: account digits drawn, check digits computed, verified by python-stdnum."""
    if isinstance(country, str):
        country = next((c for c in _COUNTRIES if c.code == country), _COUNTRIES[0])
    for _ in range(2000):
        bban = _digits(rng, country.iban_length - 4)
        if country.code == "NL":
            bban = "".join(rng.choice("ABINGRO") for _ in range(4)) + _digits(rng, 10)
        if country.code == "IT":
            bban = rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") + _digits(rng, 22)
        candidate = country.code + iban_check.calc_check_digits(country.code + "00" + bban) + bban
        if iban_check.is_valid(candidate):
            return candidate
    raise RuntimeError(f"could not draw a valid {country.code} IBAN")  # pragma: no cover


def _digits(rng: random.Random, count: int) -> str:
    return "".join(str(rng.randrange(10)) for _ in range(count))


def main(argv: Sequence[str] | None = None) -> None:
    from integration.sandbox.atlas_seed import build_atlas_dataset

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seed", type=int, default=2026, help="the ATLAS sandbox seed")
    parser.add_argument("--orders", type=int, default=120, help="the ATLAS sandbox size")
    parser.add_argument("--out-dir", type=Path, default=DATA_DIR)
    args = parser.parse_args(argv)
    dataset = build_atlas_dataset(seed=args.seed, orders=args.orders)
    register = build_erp_register(dataset.counterparties.values(), seed=args.seed)
    written = [
        write_csv(register.parties, args.out_dir / SAMPLE_CSV.name),
        write_xlsx(register.parties, args.out_dir / "erp_parties.xlsx"),
        write_csv(with_bad_rows(register.parties), args.out_dir / SAMPLE_WITH_ERRORS_CSV.name),
    ]
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
