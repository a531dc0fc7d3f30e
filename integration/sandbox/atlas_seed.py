"""Deterministic, realistic seed data for the ATLAS sandbox.

Records are raw wire dicts (camelCase, amounts as Decimal with two places) exactly as ATLAS
sends them (see ../shared/CONTRACT.md), so that the sandbox can answer them unchanged. The data
look like an energy trading book: European counterparties with valid VAT numbers and IBANs
(check digits computed, then verified with python-stdnum), monthly settlement orders in every
status of the guide's workflow, power and gas lines in both cashflow directions.

A few records are broken on purpose, and named in `AtlasDataset.broken`, so that tests and the
demo can show each failure the pipeline must catch: an item with no GL account anywhere, an
order whose total disagrees with its items, a GL account the ledger lacks, a non-posting parent
account, an order missing its due date, a counterparty missing a required custom field.

Built for volume as well: 10,000 orders x 5 items take about a second.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from stdnum import iban as iban_check
from stdnum import luhn
from stdnum.es import ccc as es_ccc
from stdnum.eu import vat as vat_check
from stdnum.iso7064 import mod_11_10

from integration.sandbox import chart

CENT = Decimal("0.01")

# --- Order statuses (the guide's standard lifecycle) -------------------------------------------

STATUS_DRAFT = "Draft order by ETRM"
STATUS_APPROVED = "Approved order by ETRM"
STATUS_FORWARDED = "Forwarded to accounting"
STATUS_RECEIVED_CODE = "Received code by accounting"
STATUS_REJECTED = "Rejected by accounting"
STATUS_RECEIVED_INVOICE = "Received invoice by accounting"
STATUS_PAYMENT_APPROVED = "Approved Payment by ETRM"
STATUS_SETTLED = "Settled"
STATUS_PARTIALLY_SETTLED = "Partially Settled"

ORDER_STATUSES: tuple[str, ...] = (
    STATUS_DRAFT,
    STATUS_APPROVED,
    STATUS_FORWARDED,
    STATUS_RECEIVED_CODE,
    STATUS_REJECTED,
    STATUS_RECEIVED_INVOICE,
    STATUS_PAYMENT_APPROVED,
    STATUS_SETTLED,
    STATUS_PARTIALLY_SETTLED,
)
# Statuses at which the ERP has written its document code back.
STATUSES_WITH_ERP_CODE = frozenset(
    {
        STATUS_RECEIVED_CODE,
        STATUS_RECEIVED_INVOICE,
        STATUS_PAYMENT_APPROVED,
        STATUS_SETTLED,
        STATUS_PARTIALLY_SETTLED,
    }
)
# Statuses at which an invoice exists in ATLAS.
STATUSES_WITH_INVOICE = frozenset(
    {STATUS_RECEIVED_INVOICE, STATUS_PAYMENT_APPROVED, STATUS_SETTLED, STATUS_PARTIALLY_SETTLED}
)

# The first non-broken orders walk through every status (so that even a dozen orders show the
# whole workflow); the rest are drawn with these weights, mostly ready for accounting.
_FIRST_STATUSES: tuple[str, ...] = (
    STATUS_APPROVED,
    STATUS_APPROVED,
    STATUS_DRAFT,
    STATUS_APPROVED,
    STATUS_FORWARDED,
    STATUS_RECEIVED_CODE,
    STATUS_REJECTED,
    STATUS_RECEIVED_INVOICE,
    STATUS_PAYMENT_APPROVED,
    STATUS_SETTLED,
    STATUS_PARTIALLY_SETTLED,
)
_STATUS_WEIGHTS: tuple[tuple[str, int], ...] = (
    (STATUS_APPROVED, 55),
    (STATUS_DRAFT, 7),
    (STATUS_FORWARDED, 4),
    (STATUS_RECEIVED_CODE, 8),
    (STATUS_REJECTED, 3),
    (STATUS_RECEIVED_INVOICE, 7),
    (STATUS_PAYMENT_APPROVED, 4),
    (STATUS_SETTLED, 7),
    (STATUS_PARTIALLY_SETTLED, 5),
)

ITEM_CALCULATED, ITEM_EDITED, ITEM_IN_ORDER = 0, 1, 2
CASHFLOW_ACTIVE, CASHFLOW_PASSIVE = 0, 1
COUNTERPARTY_TYPE_CUSTOMER, COUNTERPARTY_TYPE_SUPPLIER = 1, 2

# Names of the deliberately broken records (keys of AtlasDataset.broken).
BROKEN_KINDS: tuple[str, ...] = (
    "counterparty_without_gl_account",  # its items must carry their own account ...
    "item_without_gl_account",  # ... except this one: no GL account anywhere
    "order_with_item_without_gl_account",
    "order_total_mismatch",
    "item_atlas_only_gl_account",  # account in chart.ATLAS_ONLY_ACCOUNTS, unknown to the ledger
    "order_with_atlas_only_gl_account",
    "item_non_posting_gl_account",  # account in chart.NON_POSTING_ACCOUNTS
    "order_with_non_posting_gl_account",
    "order_missing_due_date",  # malformed: no dueDate key at all
    "counterparty_missing_required_custom_field",
)


# --- Countries: VAT, IBAN, banks, legal forms, names ---------------------------------------------


@dataclass(frozen=True)
class _Country:
    code: str
    vat_rate: Decimal
    banks: tuple[tuple[str, str], ...]  # (bank code used in the IBAN, BIC)
    legal_forms: tuple[str, ...]
    prefixes: tuple[str, ...]
    stems: tuple[str, ...]
    city: str


_COUNTRIES: tuple[_Country, ...] = (
    _Country(
        "DE",
        Decimal("19.0"),
        (("37040044", "COBADEFFXXX"), ("50070010", "DEUTDEFFXXX"), ("70020270", "HYVEDEMMXXX")),
        ("GmbH", "AG", "GmbH & Co. KG", "SE"),
        ("Nord", "Rhein", "Elb", "Main", "Isar", "Weser", "Harz", "Ostsee", "Spree", "Alpen"),
        ("strom", "wind", "energie", "gas", "kraft", "licht", "werk"),
        "Hamburg",
    ),
    _Country(
        "FR",
        Decimal("20.0"),
        (("30004", "BNPAFRPPXXX"), ("30003", "SOGEFRPPXXX"), ("30002", "CRLYFRPPXXX")),
        ("SAS", "S.A.", "SARL"),
        ("Loire", "Rhône", "Provence", "Normandie", "Alsace", "Garonne", "Bretagne", "Seine"),
        (" Énergie", " Électricité", " Gaz", " Volt", " Solaire", " Trading"),
        "Paris",
    ),
    _Country(
        "NL",
        Decimal("21.0"),
        (("INGB", "INGBNL2AXXX"), ("ABNA", "ABNANL2AXXX"), ("RABO", "RABONL2UXXX")),
        ("B.V.", "N.V."),
        ("Polder", "Noordzee", "Delta", "Zuider", "Holland", "Maas", "Waddenzee", "Veluwe"),
        (" Power", " Energie", " Gas", " Stroom", " Wind", " Trading"),
        "Amsterdam",
    ),
    _Country(
        "IT",
        Decimal("22.0"),
        (("0306909606", "BCITITMMXXX"), ("0200801600", "UNCRITMMXXX")),
        ("S.p.A.", "S.r.l."),
        ("Energia", "Elettrica", "Gas", "Luce", "Potenza"),
        (" Alpina", " Adriatica", " Padana", " Tirrenica", " Lombarda", " Siciliana", " Toscana"),
        "Milano",
    ),
    _Country(
        "ES",
        Decimal("21.0"),
        (("00491500", "BSCHESMMXXX"), ("21000418", "CAIXESBBXXX"), ("01821234", "BBVAESMMXXX")),
        ("S.A.", "S.L."),
        ("Iber", "Solar", "Eólica", "Meseta", "Cantábrica", "Levante", "Andaluza"),
        ("luz", " Energía", " Gas", " Renovables", " Trading", " Eléctrica"),
        "Madrid",
    ),
    _Country(
        "AT",
        Decimal("20.0"),
        (("12000", "BKAUATWWXXX"), ("31000", "RZBAATWWXXX"), ("20111", "GIBAATWWXXX")),
        ("GmbH", "AG"),
        ("Donau", "Alpen", "Tauern", "Inn", "Wiener", "Steirische", "Tiroler"),
        (" Energie", " Strom", "kraft", " Gas", " Netz", " Handel"),
        "Wien",
    ),
    _Country(
        "BE",
        Decimal("21.0"),
        (("001", "GEBABEBBXXX"), ("734", "KREDBEBBXXX"), ("310", "BBRUBEBBXXX")),
        ("NV", "SA", "BV", "SRL"),
        ("Schelde", "Wallonie", "Flanders", "Ardennes", "Meuse", "Brabant", "Kempen"),
        (" Energy", " Power", " Gas", " Wind", " Trading", " Elektriciteit"),
        "Brussel",
    ),
    _Country(
        "PL",
        Decimal("23.0"),
        (("10201026", "BPKOPLPWXXX"), ("11402004", "BREXPLPWXXX"), ("12401037", "PKOPPLPWXXX")),
        ("Sp. z o.o.", "S.A."),
        ("Wisła", "Bałtyk", "Mazowsze", "Śląsk", "Tatry", "Odra", "Pomorze"),
        (" Energia", " Power", " Gaz", " Handel", " Prąd", " Trading"),
        "Warszawa",
    ),
)

_CUSTOMER_SHARE = 0.6  # counterparties we mostly sell to (revenue account); the rest we buy from

# --- Custom fields -----------------------------------------------------------------------------

CUSTOM_FIELD_TYPES: tuple[tuple[int, str], ...] = (
    (1, "Text"),
    (2, "Number"),
    (3, "Date"),
    (4, "Dropdown"),
    (5, "Checkbox"),
)
CF_ERP_COST_CENTRE = 7
CF_REPORTING_SEGMENT = 8
CF_CREDIT_RATING = 9
CF_ACER_CODE = 10
CF_PAYMENT_TERMS = 11
_SEGMENTS = ("Power", "Gas", "Renewables", "Balancing")
_RATINGS = ("AAA", "AA", "A", "BBB", "BB", "B")
_COST_CENTRES = ("CC-100", "CC-110", "CC-200", "CC-210", "CC-300")


def _custom_field_definitions() -> dict[int, dict[str, Any]]:
    both = [COUNTERPARTY_TYPE_CUSTOMER, COUNTERPARTY_TYPE_SUPPLIER]
    rows = [
        (CF_ERP_COST_CENTRE, "ERP Cost Centre", "Text", False, both, []),
        (CF_REPORTING_SEGMENT, "Reporting Segment", "Dropdown", False, both, list(_SEGMENTS)),
        (CF_CREDIT_RATING, "Credit Rating", "Dropdown", False, both, list(_RATINGS)),
        # REMIT requires an ACER code for every market participant we trade with.
        (CF_ACER_CODE, "ACER Code", "Text", True, both, []),
        (CF_PAYMENT_TERMS, "Payment Terms (days)", "Number", False, both, []),
    ]
    return {
        fid: {
            "id": fid,
            "name": name,
            "type": ftype,
            "isRequired": required,
            "counterpartyTypeIds": list(types),
            "options": options,
        }
        for fid, name, ftype, required, types, options in rows
    }


# --- Products: what order items are ----------------------------------------------------------


@dataclass(frozen=True)
class _Product:
    description: str
    unit: str
    price_low: int  # EUR per unit, whole euros; cents are drawn separately
    price_high: int
    volume_low: int
    volume_high: int
    active_account: str
    passive_account: str


_PRODUCTS: tuple[_Product, ...] = (
    _Product("Baseload power", "MWh", 45, 130, 200, 9000, "4001", "5001"),
    _Product("Peakload power", "MWh", 60, 180, 100, 4000, "4001", "5001"),
    _Product("Natural gas TTF", "MWh", 25, 60, 500, 20000, "4002", "5002"),
    _Product("Natural gas THE", "MWh", 26, 62, 500, 15000, "4002", "5002"),
    _Product("Capacity reservation", "MW", 300, 1500, 5, 150, "4003", "5003"),
    _Product("Balancing energy", "MWh", 20, 250, 10, 800, "4010", "5010"),
    _Product("Transmission and grid fees", "MWh", 2, 12, 200, 9000, "4001", "5003"),
    _Product("Broker commission", "MWh", 0, 1, 1000, 20000, "4010", "6000"),
)


# --- The dataset -------------------------------------------------------------------------------


@dataclass
class AtlasDataset:
    """Raw ATLAS wire records keyed by id, plus the names of the deliberately broken ones.

    `notable` names records with behaviour worth a test (not broken): orders held by an item in
    status 0/1, correction items, orders already carrying an erpCode in the trigger status, etc.
    """

    seed: int
    custom_field_types: dict[int, dict[str, Any]] = field(default_factory=dict)
    counterparty_custom_fields: dict[int, dict[str, Any]] = field(default_factory=dict)
    counterparties: dict[int, dict[str, Any]] = field(default_factory=dict)
    orders: dict[int, dict[str, Any]] = field(default_factory=dict)
    order_items: dict[int, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[int, dict[str, Any]] = field(default_factory=dict)
    payments: dict[int, dict[str, Any]] = field(default_factory=dict)
    broken: dict[str, list[int]] = field(default_factory=dict)
    notable: dict[str, list[int]] = field(default_factory=dict)
    # The document cases (build_atlas_dataset(document_cases=True)): case name -> order id.
    document_cases: dict[str, int] = field(default_factory=dict)
    _last_ids: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    ENTITIES = (
        "custom_field_types",
        "counterparty_custom_fields",
        "counterparties",
        "orders",
        "order_items",
        "invoices",
        "payments",
    )

    def next_id(self, entity: str) -> int:
        """A fresh id for a new record of `entity` (one of ENTITIES), never handed out before.

        Ids only grow, like a database sequence: a deleted record's id is not reused.
        """
        if entity not in self.ENTITIES:
            raise ValueError(f"unknown ATLAS entity {entity!r}; one of {', '.join(self.ENTITIES)}")
        records: dict[int, Any] = getattr(self, entity)
        candidate = self._last_ids.get(entity)
        if candidate is None:
            candidate = max(records, default=_ID_BASE[entity])
        candidate += 1
        while candidate in records:  # a record added straight into the dict by a test
            candidate += 1
        self._last_ids[entity] = candidate
        return candidate

    def items_of(self, order_id: int) -> list[dict[str, Any]]:
        """The order's items (a scan: for tests; the sandbox keeps an index)."""
        return [item for item in self.order_items.values() if item["orderId"] == order_id]

    def broken_ids(self) -> set[tuple[str, int]]:
        return {(kind, rid) for kind, ids in self.broken.items() for rid in ids}


# ids start in different ranges so that an order id passed where an item id belongs is caught.
_ID_BASE = {
    "custom_field_types": 0,
    "counterparty_custom_fields": 6,
    "counterparties": 0,
    "orders": 200,
    "order_items": 9000,
    "invoices": 80,
    "payments": 500,
}


def build_atlas_dataset(
    *, seed: int = 2026, orders: int = 120, items_per_order: int = 5, document_cases: bool = False
) -> AtlasDataset:
    """Build the sandbox's data. The same seed and sizes always give the same records.

    At least 6 orders are needed for every broken record to be present; the counterparties grow
    with the orders (one per three orders, between 10 and 400). `document_cases` adds, after
    them, three counterparties and one order per case of the document rule (DOCUMENT_CASES):
    the records before them are the same with or without.
    """
    if orders < 0 or items_per_order < 1:
        raise ValueError("orders must be >= 0 and items_per_order >= 1")
    builder = _Builder(seed=seed, orders=orders, items_per_order=items_per_order)
    data = builder.build()
    if document_cases:
        _add_document_cases(builder)
    return data


class _Builder:
    def __init__(self, *, seed: int, orders: int, items_per_order: int):
        self.rng = random.Random(seed)
        self.order_count = orders
        self.items_per_order = items_per_order
        self.data = AtlasDataset(seed=seed)
        self.data.broken = {kind: [] for kind in BROKEN_KINDS}
        self.data.notable = {
            "orders_held_by_unapproved_item": [],
            "orders_with_mixed_cashflows": [],
            "orders_in_trigger_status_with_erp_code": [],
            "correction_items": [],
            "items_with_own_gl_account": [],
            "items_with_own_iban": [],
            "self_billing_counterparties": [],
            "counterparties_with_external_id": [],
            "partially_paid_invoices": [],
            "paid_invoices": [],
        }
        self._counterparty_country: dict[int, _Country] = {}
        self._counterparty_direction: dict[int, int] = {}
        self._used_names: set[str] = set()
        self._next_item_id = _ID_BASE["order_items"] + 1
        self._next_invoice_id = _ID_BASE["invoices"] + 1
        self._next_payment_id = _ID_BASE["payments"] + 1
        self._month_cache: dict[tuple[int, int], tuple[str, str, date]] = {}

    def build(self) -> AtlasDataset:
        data = self.data
        data.custom_field_types = {i: {"id": i, "name": n} for i, n in CUSTOM_FIELD_TYPES}
        data.counterparty_custom_fields = _custom_field_definitions()
        count = min(400, max(10, self.order_count // 3))
        for index in range(count):
            self._add_counterparty(index + 1, index)
        self._break_counterparties()
        self._add_orders()
        return data

    # --- counterparties --------------------------------------------------------------------

    def _add_counterparty(self, cp_id: int, index: int) -> None:
        rng = self.rng
        country = _COUNTRIES[index % len(_COUNTRIES)]
        name = self._unique_name(country)
        form = rng.choice(country.legal_forms)
        direction = CASHFLOW_ACTIVE if rng.random() < _CUSTOMER_SHARE else CASHFLOW_PASSIVE
        accounts = (
            chart.REVENUE_ACCOUNTS if direction == CASHFLOW_ACTIVE else chart.EXPENSE_ACCOUNTS
        )
        bank_code, bic = rng.choice(country.banks)
        # Fixed shares rather than draws, so that even a ten-counterparty book has some of each.
        has_external_id = index % 4 == 1
        self_billing = index % 8 == 3
        values = [
            {
                "customFieldId": CF_ERP_COST_CENTRE,
                "name": "ERP Cost Centre",
                "value": rng.choice(_COST_CENTRES),
            },
            {
                "customFieldId": CF_REPORTING_SEGMENT,
                "name": "Reporting Segment",
                "value": rng.choice(_SEGMENTS),
            },
            {"customFieldId": CF_ACER_CODE, "name": "ACER Code", "value": self._acer_code(country)},
        ]
        if rng.random() < 0.8:
            values.append(
                {
                    "customFieldId": CF_CREDIT_RATING,
                    "name": "Credit Rating",
                    "value": rng.choice(_RATINGS),
                }
            )
        if rng.random() < 0.5:
            values.append(
                {
                    "customFieldId": CF_PAYMENT_TERMS,
                    "name": "Payment Terms (days)",
                    "value": rng.choice((14, 20, 30, 45)),
                }
            )
        record = {
            "id": cp_id,
            "name": name,
            "legalName": f"{name} {form}",
            "externalId": f"CUST-{cp_id:04d}" if has_external_id else None,
            "counterpartyTypeId": COUNTERPARTY_TYPE_CUSTOMER
            if direction == CASHFLOW_ACTIVE
            else COUNTERPARTY_TYPE_SUPPLIER,
            "vat": self._vat_number(country),
            "glAccount": rng.choice(accounts),
            "iban": self._iban(country, bank_code),
            "swiftBic": bic,
            "selfBilling": self_billing,
            "address": f"{rng.randint(1, 180)} Energy Street, {country.city}",
            "countryCode": country.code,
            "customFieldValues": values,
        }
        self.data.counterparties[cp_id] = record
        self._counterparty_country[cp_id] = country
        self._counterparty_direction[cp_id] = direction
        if record["selfBilling"]:
            self.data.notable["self_billing_counterparties"].append(cp_id)
        if has_external_id:
            self.data.notable["counterparties_with_external_id"].append(cp_id)

    def _break_counterparties(self) -> None:
        cps = self.data.counterparties
        ids = sorted(cps)
        # The last counterparty has no GL account; its items normally carry their own.
        no_gl = ids[-1]
        cps[no_gl]["glAccount"] = None
        self.data.broken["counterparty_without_gl_account"].append(no_gl)
        # Another lacks the required ACER code.
        missing_cf = ids[-2]
        cps[missing_cf]["customFieldValues"] = [
            v for v in cps[missing_cf]["customFieldValues"] if v["customFieldId"] != CF_ACER_CODE
        ]
        self.data.broken["counterparty_missing_required_custom_field"].append(missing_cf)

    def _unique_name(self, country: _Country) -> str:
        rng = self.rng
        for _ in range(50):
            name = f"{rng.choice(country.prefixes)}{rng.choice(country.stems)}"
            if name not in self._used_names:
                self._used_names.add(name)
                return name
        # Pools exhausted (hundreds of counterparties): qualify by a city-style number.
        base = f"{rng.choice(country.prefixes)}{rng.choice(country.stems)}"
        suffix = 2
        while f"{base} {country.city} {suffix}" in self._used_names:
            suffix += 1
        name = f"{base} {country.city} {suffix}"
        self._used_names.add(name)
        return name

    def _digits(self, count: int) -> str:
        return "".join(str(self.rng.randrange(10)) for _ in range(count))

    def _acer_code(self, country: _Country) -> str:
        # ACER codes look like A0001234X.EU (12 characters).
        return f"A{self._digits(7)}{chr(65 + self.rng.randrange(26))}.EU"

    def _vat_number(self, country: _Country) -> str:
        for _ in range(100):
            number = _VAT_MAKERS[country.code](self)
            if number is not None:
                vat = country.code + number
                if vat_check.is_valid(vat):
                    return vat
        raise RuntimeError(
            f"could not generate a VAT number for {country.code}"
        )  # pragma: no cover

    def _iban(self, country: _Country, bank_code: str) -> str:
        bban = _BBAN_MAKERS[country.code](self, bank_code)
        number = country.code + "00" + bban
        number = country.code + iban_check.calc_check_digits(number) + bban
        if not iban_check.is_valid(number):  # pragma: no cover - a bug in a maker
            raise RuntimeError(f"generated an invalid IBAN for {country.code}")
        return number

    # --- orders and items ------------------------------------------------------------------

    def _broken_positions(self) -> dict[int, str]:
        n = self.order_count
        kinds = (
            "order_with_item_without_gl_account",
            "order_total_mismatch",
            "order_with_atlas_only_gl_account",
            "order_with_non_posting_gl_account",
            "order_missing_due_date",
        )
        if n < len(kinds) + 1:
            return {}
        # Spread over the book rather than bunched at the start.
        return {(n * (k + 1)) // (len(kinds) + 1): kind for k, kind in enumerate(kinds)}

    def _add_orders(self) -> None:
        rng = self.rng
        broken_at = self._broken_positions()
        cp_ids = sorted(self.data.counterparties)
        healthy_cps = [
            cp
            for cp in cp_ids
            if cp not in self.data.broken["counterparty_without_gl_account"]
            and cp not in self.data.broken["counterparty_missing_required_custom_field"]
        ]
        statuses, weights = zip(*_STATUS_WEIGHTS, strict=True)
        normal_index = 0
        for position in range(self.order_count):
            order_id = _ID_BASE["orders"] + 1 + position
            broken_kind = broken_at.get(position)
            if broken_kind is not None:
                status = STATUS_APPROVED
            elif normal_index < len(_FIRST_STATUSES):
                status = _FIRST_STATUSES[normal_index]
                normal_index += 1
            else:
                status = rng.choices(statuses, weights)[0]
                normal_index += 1
            if broken_kind == "order_with_item_without_gl_account":
                cp_id = self.data.broken["counterparty_without_gl_account"][0]
            else:
                cp_id = rng.choice(healthy_cps)
            self._add_order(order_id, position, cp_id, status, broken_kind, normal_index)

    def _month(self, position: int) -> tuple[int, int]:
        # Delivery months January to October 2026, cycling through the book.
        return 2026, 1 + (position * 7 + self.rng.randrange(3)) % 10

    def _month_strings(self, year: int, month: int) -> tuple[str, str, date]:
        key = (year, month)
        cached = self._month_cache.get(key)
        if cached is None:
            first = date(year, month, 1)
            following = date(year + (month == 12), month % 12 + 1, 1)
            last = following - timedelta(days=1)
            cached = (f"{first.isoformat()}T00:00:00", f"{last.isoformat()}T23:59:59", following)
            self._month_cache[key] = cached
        return cached

    def _add_order(
        self,
        order_id: int,
        position: int,
        cp_id: int,
        status: str,
        broken_kind: str | None,
        normal_index: int,
    ) -> None:
        rng = self.rng
        data = self.data
        year, month = self._month(position)
        period_from, period_to, following = self._month_strings(year, month)
        registration = following + timedelta(days=rng.randrange(0, 5))
        due = registration + timedelta(days=rng.choice((10, 14, 20, 30)))
        direction = self._counterparty_direction[cp_id]
        country = self._counterparty_country[cp_id]
        mixed = broken_kind is None and rng.random() < 0.15

        # Which item holds an approved order back (status 0/1)?
        held = (
            status == STATUS_APPROVED
            and broken_kind is None
            and (normal_index == 2 or rng.random() < 0.06)
        )
        items: list[dict[str, Any]] = []
        for line in range(self.items_per_order):
            cashflow = direction
            if mixed and line == self.items_per_order - 1:
                cashflow = 1 - direction
            item = self._make_item(
                order_id, cp_id, country, cashflow, status, period_from, period_to
            )
            if held and line == 0:
                item["status"] = rng.choice((ITEM_CALCULATED, ITEM_EDITED))
            items.append(item)

        if broken_kind == "order_with_item_without_gl_account":
            for item in items:
                item["glAccount"] = rng.choice(
                    chart.REVENUE_ACCOUNTS if item["cashflow"] == 0 else chart.EXPENSE_ACCOUNTS
                )
            items[0]["glAccount"] = None
            data.broken["item_without_gl_account"].append(items[0]["id"])
        elif broken_kind == "order_with_atlas_only_gl_account":
            items[0]["glAccount"] = chart.ATLAS_ONLY_ACCOUNTS[items[0]["cashflow"]]
            data.broken["item_atlas_only_gl_account"].append(items[0]["id"])
        elif broken_kind == "order_with_non_posting_gl_account":
            items[0]["glAccount"] = chart.NON_POSTING_ACCOUNTS[items[0]["cashflow"]]
            data.broken["item_non_posting_gl_account"].append(items[0]["id"])

        total = sum((i["netAmount"] + i["vatAmount"] for i in items), Decimal("0.00"))
        if broken_kind == "order_total_mismatch":
            total += Decimal("10.00")

        erp_code = None
        if status in STATUSES_WITH_ERP_CODE or (
            status == STATUS_APPROVED
            and broken_kind is None
            and not held
            and (normal_index == 4 or rng.random() < 0.05)
        ):
            erp_code = f"ERP-DOC-{registration.strftime('%Y%m%d')}-{order_id:04d}"
            if status == STATUS_APPROVED:
                data.notable["orders_in_trigger_status_with_erp_code"].append(order_id)

        order: dict[str, Any] = {
            "id": order_id,
            "counterpartyId": cp_id,
            "status": status,
            "erpCode": erp_code,
            "documentReference": f"SO-{year}-{month:02d}-{order_id:04d}",
            "currency": "EUR",
            "registrationDate": f"{registration.isoformat()}T00:00:00",
            "dueDate": f"{due.isoformat()}T00:00:00",
            "periodFrom": period_from,
            "periodTo": period_to,
            "totalAmount": total,
        }
        if broken_kind == "order_missing_due_date":
            del order["dueDate"]
        data.orders[order_id] = order
        for item in items:
            data.order_items[item["id"]] = item
        if broken_kind is not None:
            data.broken[broken_kind].append(order_id)
        if held:
            data.notable["orders_held_by_unapproved_item"].append(order_id)
        if mixed:
            data.notable["orders_with_mixed_cashflows"].append(order_id)
        if status in STATUSES_WITH_INVOICE:
            self._add_invoice(order, cp_id, status, registration, due)

    def _make_item(
        self,
        order_id: int,
        cp_id: int,
        country: _Country,
        cashflow: int,
        order_status: str,
        period_from: str,
        period_to: str,
    ) -> dict[str, Any]:
        rng = self.rng
        product = rng.choice(_PRODUCTS)
        volume = Decimal(rng.randint(product.volume_low * 10, product.volume_high * 10)) / 10
        price = Decimal(rng.randint(product.price_low * 100 + 1, product.price_high * 100 + 99))
        price /= 100
        net = (volume * price).quantize(CENT, rounding=ROUND_HALF_UP)
        # Domestic deliveries carry the counterparty country's VAT; cross-border B2B deliveries
        # are reverse charge (0%).
        vat_rate = (
            country.vat_rate if (country.code == "DE" or rng.random() < 0.5) else Decimal("0.0")
        )
        vat = (net * vat_rate / 100).quantize(CENT, rounding=ROUND_HALF_UP)
        correction = rng.random() < 0.03
        sign = 1 if cashflow == CASHFLOW_ACTIVE else -1
        if correction:
            sign = -sign
        item_id = self._next_item_id
        self._next_item_id += 1
        # An item whose cashflow differs from the counterparty's usual direction must carry its
        # own account (the counterparty's would be on the wrong side of the books).
        own_account = cashflow != self._counterparty_direction[cp_id] or rng.random() < 0.4
        gl_account = (
            (product.active_account if cashflow == CASHFLOW_ACTIVE else product.passive_account)
            if own_account
            else None
        )
        own_iban = rng.random() < 0.05
        if order_status == STATUS_DRAFT:
            status = rng.choice((ITEM_CALCULATED, ITEM_EDITED, ITEM_IN_ORDER))
        else:
            status = ITEM_IN_ORDER
        item = {
            "id": item_id,
            "orderId": order_id,
            "dealId": 5000 + rng.randrange(1, 4000),
            "description": f"{product.description} {period_from[:7]}",
            "netAmount": net * sign,
            "vatAmount": vat * sign,
            "vatRate": vat_rate,
            "volume": volume,
            "volumeUnit": product.unit,
            "periodFrom": period_from,
            "periodTo": period_to,
            "cashflow": cashflow,
            "glAccount": gl_account,
            "iban": self._iban(country, rng.choice(country.banks)[0]) if own_iban else None,
            "status": status,
        }
        if correction:
            self.data.notable["correction_items"].append(item_id)
        if gl_account is not None:
            self.data.notable["items_with_own_gl_account"].append(item_id)
        if own_iban:
            self.data.notable["items_with_own_iban"].append(item_id)
        return item

    # --- invoices and payments -------------------------------------------------------------

    def _add_invoice(
        self, order: dict[str, Any], cp_id: int, status: str, registration: date, due: date
    ) -> None:
        rng = self.rng
        invoice_id = self._next_invoice_id
        self._next_invoice_id += 1
        sequence = invoice_id - _ID_BASE["invoices"]
        self_billing = self.data.counterparties[cp_id]["selfBilling"]
        amount = abs(order["totalAmount"])
        invoice = {
            "id": invoice_id,
            "orderId": order["id"],
            "externalId": f"INV-2026-{sequence:04d}",
            "invoiceNumber": f"{'SB' if self_billing else 'AR'}-2026-{sequence:04d}",
            "amount": amount,
            "invoiceDate": f"{registration.isoformat()}T00:00:00",
            "dueDate": f"{due.isoformat()}T00:00:00",
            "isPaid": status == STATUS_SETTLED,
        }
        self.data.invoices[invoice_id] = invoice
        if status == STATUS_SETTLED:
            # Settled: paid in full, sometimes in two instalments.
            if rng.random() < 0.3 and amount >= Decimal("1.00"):
                first = (amount * Decimal(rng.randint(30, 70)) / 100).quantize(CENT)
                parts = [first, amount - first]
            else:
                parts = [amount]
            self.data.notable["paid_invoices"].append(invoice_id)
        elif status == STATUS_PARTIALLY_SETTLED:
            parts = [(amount * Decimal(rng.randint(20, 80)) / 100).quantize(CENT)]
            self.data.notable["partially_paid_invoices"].append(invoice_id)
        else:
            parts = []
        for number, part in enumerate(parts):
            payment_id = self._next_payment_id
            self._next_payment_id += 1
            paid_on = due - timedelta(days=rng.randrange(0, 5)) + timedelta(days=7 * number)
            self.data.payments[payment_id] = {
                "id": payment_id,
                "invoiceId": invoice_id,
                "orderId": order["id"],
                "externalId": f"PAY-2026-{payment_id - _ID_BASE['payments']:04d}",
                "amount": part,
                "paymentDate": f"{paid_on.isoformat()}T00:00:00",
            }


# --- Document cases: one order per case of the document rule (services/documents.py) ----------

# Case name -> what it shows. Orders in the trigger status, erpCode null, every item In Order,
# dated June 2026 (an open period of the AR Ledger sandbox); fixed amounts, so that tests can
# assert every account's figure.
DOCUMENT_CASES: dict[str, str] = {
    "receivable": "Active items of a customer: our invoice (INV)",
    "payable": "Passive items of a supplier that does not self-bill: the ERP sends its invoice",
    "self_billing_payable": "Passive items of a self-billing supplier: our self-billing invoice",
    "passive_item_revenue_gl": (
        "a customer's order with a Passive item without a GL account, the customer carrying only "
        "a revenue account: the item needs LEDGER_ACCOUNT_DEFAULT_EXPENSE; nets to a receivable"
    ),
    "mixed_payable": "a supplier's Passive items and an Active item netting to a payable",
    "mixed_zero": "an Active and a Passive item that offset exactly: no document",
}
# (key, name, legal form, counterparty type, GL account, self-billing)
_DOCUMENT_CASE_PARTIES = (
    ("customer", "Stadtwerke Elbtal", "GmbH", COUNTERPARTY_TYPE_CUSTOMER, "4001", False),
    ("supplier", "Nordgas Beschaffung", "GmbH", COUNTERPARTY_TYPE_SUPPLIER, "5002", False),
    (
        "self_billing_supplier",
        "Windpark Ostsee",
        "GmbH & Co. KG",
        COUNTERPARTY_TYPE_SUPPLIER,
        "5001",
        True,
    ),
)
# case -> (party, [(description, cashflow, net, own GL account or None)]); German VAT, 19%.
_DOCUMENT_CASE_ORDERS: dict[str, tuple[str, list[tuple[str, int, str, str | None]]]] = {
    "receivable": (
        "customer",
        [
            ("Baseload power 2026-05", CASHFLOW_ACTIVE, "10000.00", None),
            ("Peakload power 2026-05", CASHFLOW_ACTIVE, "5000.00", None),
        ],
    ),
    "payable": ("supplier", [("Natural gas TTF 2026-05", CASHFLOW_PASSIVE, "-20000.00", None)]),
    "self_billing_payable": (
        "self_billing_supplier",
        [("Wind power purchase 2026-05", CASHFLOW_PASSIVE, "-8000.00", None)],
    ),
    "passive_item_revenue_gl": (
        "customer",
        [
            ("Baseload power 2026-05", CASHFLOW_ACTIVE, "12000.00", None),
            ("Balancing energy bought back 2026-05", CASHFLOW_PASSIVE, "-2000.00", None),
        ],
    ),
    "mixed_payable": (
        "supplier",
        [
            ("Natural gas THE 2026-05", CASHFLOW_PASSIVE, "-30000.00", None),
            ("Balancing energy sold 2026-05", CASHFLOW_ACTIVE, "4000.00", "4010"),
        ],
    ),
    "mixed_zero": (
        "customer",
        [
            ("Peakload power 2026-05", CASHFLOW_ACTIVE, "5000.00", None),
            ("Peakload power swap 2026-05", CASHFLOW_PASSIVE, "-5000.00", "5001"),
        ],
    ),
}
_DOCUMENT_CASE_VAT_RATE = Decimal("19.0")


def _add_document_cases(builder: _Builder) -> None:
    """Three German counterparties with ERP codes (externalId set, so they are mapped) and one
    order per DOCUMENT_CASES entry, ids after everything else."""
    data = builder.data
    germany = next(c for c in _COUNTRIES if c.code == "DE")
    party_ids: dict[str, int] = {}
    for key, name, form, type_id, gl_account, self_billing in _DOCUMENT_CASE_PARTIES:
        cp_id = data.next_id("counterparties")
        bank_code, bic = germany.banks[0]
        data.counterparties[cp_id] = {
            "id": cp_id,
            "name": name,
            "legalName": f"{name} {form}",
            "externalId": f"DOC-{cp_id:04d}",
            "counterpartyTypeId": type_id,
            "vat": builder._vat_number(germany),
            "glAccount": gl_account,
            "iban": builder._iban(germany, bank_code),
            "swiftBic": bic,
            "selfBilling": self_billing,
            "address": f"{len(name)} Energy Street, {germany.city}",
            "countryCode": germany.code,
            "customFieldValues": [
                {"customFieldId": CF_ERP_COST_CENTRE, "name": "ERP Cost Centre", "value": "CC-100"},
                {
                    "customFieldId": CF_ACER_CODE,
                    "name": "ACER Code",
                    "value": builder._acer_code(germany),
                },
            ],
        }
        party_ids[key] = cp_id
        if self_billing:
            data.notable["self_billing_counterparties"].append(cp_id)
        data.notable["counterparties_with_external_id"].append(cp_id)
    for case, (party, lines) in _DOCUMENT_CASE_ORDERS.items():
        order_id = data.next_id("orders")
        items = []
        for description, cashflow, net_text, gl_account in lines:
            net = Decimal(net_text)
            vat = (net * _DOCUMENT_CASE_VAT_RATE / 100).quantize(CENT, rounding=ROUND_HALF_UP)
            item_id = data.next_id("order_items")
            items.append(
                {
                    "id": item_id,
                    "orderId": order_id,
                    "dealId": 9000 + item_id % 1000,
                    "description": description,
                    "netAmount": net,
                    "vatAmount": vat,
                    "vatRate": _DOCUMENT_CASE_VAT_RATE,
                    "volume": Decimal("100.0"),
                    "volumeUnit": "MWh",
                    "periodFrom": "2026-05-01T00:00:00",
                    "periodTo": "2026-05-31T23:59:59",
                    "cashflow": cashflow,
                    "glAccount": gl_account,
                    "iban": None,
                    "status": ITEM_IN_ORDER,
                }
            )
        for item in items:
            data.order_items[item["id"]] = item
        data.orders[order_id] = {
            "id": order_id,
            "counterpartyId": party_ids[party],
            "status": STATUS_APPROVED,
            "erpCode": None,
            "documentReference": f"SO-2026-05-{order_id:04d}",
            "currency": "EUR",
            "registrationDate": "2026-06-03T00:00:00",
            "dueDate": "2026-06-17T00:00:00",
            "periodFrom": "2026-05-01T00:00:00",
            "periodTo": "2026-05-31T23:59:59",
            "totalAmount": sum((i["netAmount"] + i["vatAmount"] for i in items), Decimal("0.00")),
        }
        data.document_cases[case] = order_id
        if len({i["cashflow"] for i in items}) > 1:
            data.notable["orders_with_mixed_cashflows"].append(order_id)


# --- VAT numbers: body digits drawn, check digits computed (None = draw again) ------------------


def _vat_de(b: _Builder) -> str | None:
    body = str(b.rng.randint(1, 9)) + b._digits(7)
    return body + mod_11_10.calc_check_digit(body)


def _vat_fr(b: _Builder) -> str | None:
    siren_body = str(b.rng.randint(1, 9)) + b._digits(7)
    siren = siren_body + luhn.calc_check_digit(siren_body)
    key = int(siren + "12") % 97
    return f"{key:02d}{siren}"


def _vat_nl(b: _Builder) -> str | None:
    body = str(b.rng.randint(1, 9)) + b._digits(7)
    check = sum((9 - i) * int(d) for i, d in enumerate(body)) % 11
    if check == 10:
        return None
    return f"{body}{check}B01"


def _vat_it(b: _Builder) -> str | None:
    body = str(b.rng.randint(1, 9)) + b._digits(6) + f"{b.rng.randint(1, 100):03d}"
    return body + luhn.calc_check_digit(body)


def _vat_es(b: _Builder) -> str | None:
    # A sociedad limitada / anónima: CIF letter B or A, seven digits, a numeric check digit.
    body = b.rng.choice("AB") + b._digits(7)
    return body + luhn.calc_check_digit(body[1:])


def _vat_at(b: _Builder) -> str | None:
    body = "U" + str(b.rng.randint(1, 9)) + b._digits(6)
    return body + str((6 - luhn.checksum(body[1:])) % 10)


def _vat_be(b: _Builder) -> str | None:
    body = "0" + str(b.rng.randint(2, 9)) + b._digits(6)
    return f"{body}{97 - int(body) % 97:02d}"


def _vat_pl(b: _Builder) -> str | None:
    body = str(b.rng.randint(1, 9)) + b._digits(8)
    check = sum(w * int(d) for w, d in zip((6, 5, 7, 2, 3, 4, 5, 6, 7), body, strict=True)) % 11
    if check == 10:
        return None
    return f"{body}{check}"


_VAT_MAKERS = {
    "DE": _vat_de,
    "FR": _vat_fr,
    "NL": _vat_nl,
    "IT": _vat_it,
    "ES": _vat_es,
    "AT": _vat_at,
    "BE": _vat_be,
    "PL": _vat_pl,
}


# --- IBANs: national account numbers with their own check digits where the country has them ----


def _bban_de(b: _Builder, bank: str) -> str:
    return bank + b._digits(10)


def _bban_fr(b: _Builder, bank: str) -> str:
    branch, account = b._digits(5), b._digits(11)
    rib_key = 97 - (89 * int(bank) + 15 * int(branch) + 3 * int(account)) % 97
    return f"{bank}{branch}{account}{rib_key:02d}"


def _bban_nl(b: _Builder, bank: str) -> str:
    return bank + b._digits(10)


_IT_ODD = (1, 0, 5, 7, 9, 13, 15, 17, 19, 21)


def _bban_it(b: _Builder, bank: str) -> str:
    # bank = ABI (5) + CAB (5); the CIN letter is a weighted check over ABI, CAB and account.
    rest = bank + b._digits(12)
    total = sum(_IT_ODD[int(d)] if i % 2 == 0 else int(d) for i, d in enumerate(rest))
    return chr(65 + total % 26) + rest


def _bban_es(b: _Builder, bank: str) -> str:
    account = b._digits(10)
    check = es_ccc.calc_check_digits(bank + "00" + account)
    return f"{bank}{check}{account}"


def _bban_at(b: _Builder, bank: str) -> str:
    return bank + b._digits(11)


def _bban_be(b: _Builder, bank: str) -> str:
    body = bank + b._digits(7)
    check = int(body) % 97 or 97
    return f"{body}{check:02d}"


def _bban_pl(b: _Builder, bank: str) -> str:
    return bank + b._digits(16)


_BBAN_MAKERS = {
    "DE": _bban_de,
    "FR": _bban_fr,
    "NL": _bban_nl,
    "IT": _bban_it,
    "ES": _bban_es,
    "AT": _bban_at,
    "BE": _bban_be,
    "PL": _bban_pl,
}
