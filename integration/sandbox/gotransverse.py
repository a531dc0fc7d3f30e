"""A stateful fake of the Gotransverse AR Ledger API 3.10, as a werkzeug WSGI app.

It behaves as the spec and CONTRACT.md describe, so the client, the mirror and the journal
poster can be tested over real HTTP:
- `X-Api-Key` on every call (401 otherwise); errors are `{"code", "message"}`;
- lists are paged by `page_number` (from 1) and `page_size` (capped at 50, not refused) and
  carry `X-Total-Count`, `X-Elements-Count`, `X-Total-Pages`;
- bulk manual transactions are validated one by one as a ledger would (unknown GL account,
  non-posting account, debits != credits, no entries...): an invalid one gets its own `code`
  and `error_message`, the others are created or posted;
- a transaction dated in a closed period is posted into the next open period (recorded on the
  stored transaction: `requested_period_id`, `posted_period_id`, `rolled_forward`);
- a repeated `source_transaction_reference` is accepted (nothing public says the ledger
  refuses it), so tests can check the project never sends one twice;
- drafts can be listed, updated, posted and deleted; posted transactions cannot be changed
  (409 on update, 400 on delete or a second post), produce accounting entries and move the
  balance; periods can be opened and closed through the spec's endpoints.

Faults come from the shared FaultConfig (a share of 503s, slow answers). No Django imports.
"""

from __future__ import annotations

import hmac
import itertools
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from integration import wire
from integration.sandbox.clock import SandboxClock
from integration.sandbox.faults import FaultConfig
from integration.sandbox.gotransverse_seed import (
    CALENDAR_ID,
    CATEGORY_BY_TYPE,
    CHART_OF_ACCOUNTS_ID,
    DESIGNATIONS,
    LEDGER_CURRENCY,
    LEDGER_ID,
    TENANT_ID,
    SeedAccount,
    SeedPeriod,
    SeedYear,
    seed_accounts,
    seed_categories,
    seed_collectors,
    seed_years,
)
from integration.sandbox.tampering import LedgerTampering

MAX_PAGE_SIZE = 50
DEFAULT_PAGE_SIZE = 25
DRAFT = "DRAFT"
POSTED = "POSTED"

# Per-transaction result codes of the bulk endpoints (the spec types `code` as an integer).
CODE_CREATED = 201
CODE_POSTED = 200
CODE_INVALID = 400
CODE_NOT_FOUND = 404
CODE_CONFLICT = 409


class ApiError(Exception):
    """An error answer: HTTP status and the spec's `{"code", "message"}` body."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class TransactionInvalid(Exception):
    """One transaction failed the ledger's validation (becomes its bulk `error_message`)."""

    def __init__(self, message: str, code: int = CODE_INVALID):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class RecordedCall:
    """One request as the sandbox saw it (the API key is never recorded)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int


@dataclass
class StoredEntry:
    gl_account_id: int
    gl_account_num: str
    gl_account_name: str
    credit: bool
    amount: Decimal
    currency: str
    occurred_on: datetime
    event_date: datetime | None = None
    description: str | None = None
    billing_account_num: str | None = None
    converted_amount: dict[str, Any] | None = None
    conversion_date: datetime | None = None
    entry_values: dict[str, Any] | None = None
    id: int | None = None
    accounting_period_id: int | None = None
    requested_period_id: int | None = None
    posted_on: datetime | None = None


@dataclass
class StoredTransaction:
    """A transaction as the ledger holds it. Tests read these through `sandbox.transactions`."""

    id: int
    ledger_id: int
    status: str
    source_transaction_reference: str | None
    source_batch_reference: str | None
    target_batch_key: str | None
    entries: list[StoredEntry]
    created_on: datetime
    posted_on: datetime | None = None

    @property
    def is_posted(self) -> bool:
        return self.status == POSTED

    @property
    def requested_period_id(self) -> int | None:
        """The period the transaction's date falls in."""
        return self.entries[0].requested_period_id if self.entries else None

    @property
    def posted_period_id(self) -> int | None:
        """The period the ledger booked it into (differs after a roll-forward)."""
        return self.entries[0].accounting_period_id if self.entries else None

    @property
    def rolled_forward(self) -> bool:
        return any(
            e.accounting_period_id is not None and e.accounting_period_id != e.requested_period_id
            for e in self.entries
        )

    @property
    def total_debits(self) -> Decimal:
        return sum((e.amount for e in self.entries if not e.credit), Decimal("0"))

    @property
    def total_credits(self) -> Decimal:
        return sum((e.amount for e in self.entries if e.credit), Decimal("0"))


@dataclass
class _Run:
    data: dict[str, Any]
    errors: list[dict[str, Any]] = field(default_factory=list)


class GotransverseSandbox(LedgerTampering):
    """The WSGI app. Call it like any WSGI app; inspect `calls` and `transactions` in tests."""

    def __init__(
        self,
        *,
        seed: int = 2026,
        api_key: str = "sandbox-api-key",
        clock: SandboxClock | None = None,
        faults: FaultConfig | None = None,
        fault_sleep: Callable[[float], None] = time.sleep,
        max_recorded_calls: int | None = 10_000,
    ):
        if not api_key:
            raise ValueError("the sandbox needs an api_key to check X-Api-Key against")
        self.seed = seed
        self.api_key = api_key
        self.clock = clock or SandboxClock()
        # The AR Ledger's transient failure is 503 (the only one its clients retry).
        self.faults = faults or FaultConfig(seed=seed, error_statuses=(503,))
        self._fault_sleep = fault_sleep
        self._lock = threading.RLock()
        # Bounded so that a sandbox serving a long demo does not grow without end.
        self.calls: deque[RecordedCall] = deque(maxlen=max_recorded_calls)
        self.ledger_id = LEDGER_ID
        self.currency = LEDGER_CURRENCY
        self.create_zero_amount_entries = False
        self.accounts: list[SeedAccount] = seed_accounts()
        self._accounts_by_number = {a.number: a for a in self.accounts}
        self._accounts_by_id = {a.id: a for a in self.accounts}
        self.categories = seed_categories()
        self.years: list[SeedYear] = seed_years()
        self._transactions: dict[int, StoredTransaction] = {}
        self._transaction_ids = itertools.count(1001)
        self._entry_ids = itertools.count(50001)
        self._batch_numbers = itertools.count(1)
        self._history_ids = itertools.count(1)
        for period in self.periods:
            for item in period.history:
                item["id"] = next(self._history_ids)
        self._gl_runs: dict[int, _Run] = {}
        self._collector_runs: dict[int, _Run] = {}
        self._run_ids = itertools.count(1)
        self._run_error_ids = itertools.count(1)
        self._seed_runs()
        self._url_map = Map(self._rules())

    # --- test helpers ------------------------------------------------------------------------

    @property
    def transactions(self) -> list[StoredTransaction]:
        """Every stored transaction (drafts and posted), in id order."""
        with self._lock:
            return [self._transactions[k] for k in sorted(self._transactions)]

    def transaction(self, transaction_id: int) -> StoredTransaction:
        with self._lock:
            return self._transactions[transaction_id]

    def posted_transactions(self) -> list[StoredTransaction]:
        return [t for t in self.transactions if t.is_posted]

    def draft_transactions(self) -> list[StoredTransaction]:
        return [t for t in self.transactions if not t.is_posted]

    def transactions_with_reference(self, reference: str) -> list[StoredTransaction]:
        return [t for t in self.transactions if t.source_transaction_reference == reference]

    @property
    def periods(self) -> list[SeedPeriod]:
        return [p for y in self.years for p in y.periods]

    def period(self, period_id: int) -> SeedPeriod:
        return next(p for p in self.periods if p.id == period_id)

    def period_for(self, day: date) -> SeedPeriod | None:
        return next((p for p in self.periods if p.start_date <= day <= p.end_date), None)

    def set_period_open(self, period_id: int, is_open: bool) -> None:
        """Open or close a period directly (the HTTP endpoints do the same)."""
        with self._lock:
            self._set_period_open(self.period(period_id), is_open)

    def set_account_status(self, number: str, status: str) -> None:
        """Activate or deactivate a GL account as a person would in Gotransverse ("ACTIVE",
        "INACTIVE"): transactions on an inactive one are refused."""
        with self._lock:
            self._accounts_by_number[number].status = status

    def add_gl_account(self, *, number: str, name: str, type: str, designation: str) -> None:
        """A new posting account in the chart, as a person would add it in Gotransverse."""
        category_id, category_name, designation_category = CATEGORY_BY_TYPE[type]
        with self._lock:
            if number in self._accounts_by_number:
                raise ValueError(f"GL account {number} exists already")
            account = SeedAccount(
                id=max(a.id for a in self.accounts) + 1,
                number=number,
                name=name,
                type=type,
                designation=designation,
                is_posting_account=True,
                parent_number=None,
                category_id=category_id,
                category_name=category_name,
                designation_category=designation_category,
            )
            self.accounts.append(account)
            self._accounts_by_number[number] = account
            self._accounts_by_id[account.id] = account

    def calls_to(self, path: str, method: str | None = None) -> list[RecordedCall]:
        """The recorded calls to exactly this path (and method, when given)."""
        return [
            c
            for c in list(self.calls)
            if c.path == path and (method is None or c.method == method.upper())
        ]

    def reset_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    # --- WSGI --------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        response = self._handle(request)
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        body: Any = None
        raw = request.get_data(cache=True)
        body_error = None
        if raw.strip():
            try:
                body = wire.loads(raw)
            except ValueError:
                body_error = "the request body is not valid JSON"
        query = {k: v for k, v in request.args.items()}
        try:
            response = self._dispatch(request, body, body_error)
        except ApiError as exc:
            response = _error(exc.status, exc.code, exc.message)
        if not self.faults.is_exempt(request.path):
            with self._lock:
                self.calls.append(
                    RecordedCall(
                        method=request.method,
                        path=request.path,
                        query=query,
                        body=body,
                        status=response.status_code,
                    )
                )
        return response

    def _dispatch(self, request: Request, body: Any, body_error: str | None) -> Response:
        fault = self.faults.next_fault(request.path)
        if fault is not None:
            if fault.delay_seconds:
                self._fault_sleep(fault.delay_seconds)
            if fault.status is not None:
                response = _error(
                    fault.status,
                    "SERVICE_UNAVAILABLE" if fault.status == 503 else "INJECTED_FAULT",
                    fault.message,
                )
                if fault.retry_after is not None:
                    response.headers["Retry-After"] = str(fault.retry_after)
                return response
        adapter = self._url_map.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except MethodNotAllowed:
            raise ApiError(405, "METHOD_NOT_ALLOWED", "method not allowed here") from None
        except NotFound:
            raise ApiError(404, "NOT_FOUND", f"no such endpoint: {request.path}") from None
        except HTTPException as exc:  # pragma: no cover - other routing errors
            raise ApiError(exc.code or 400, "BAD_REQUEST", str(exc)) from None
        if endpoint.startswith("control_"):
            # The controls need no key (tests and the demo drive them), so they answer loopback
            # only, whatever address the app ends up served on (as the ATLAS sandbox does).
            if request.remote_addr not in _LOOPBACK_ADDRESSES:
                raise ApiError(403, "FORBIDDEN", "sandbox controls answer loopback only")
        else:
            sent = request.headers.get("X-Api-Key", "")
            if not sent or not hmac.compare_digest(sent.encode(), self.api_key.encode()):
                raise ApiError(
                    401, "UNAUTHORIZED", "Authentication failed: missing or wrong X-Api-Key"
                )
        if body_error:
            raise ApiError(400, "BAD_REQUEST", body_error)
        handler = getattr(self, f"_{endpoint}")
        with self._lock:
            return handler(request, body, **args)

    def _rules(self) -> list[Rule]:
        ledger = "/ledgers/<int:ledger_id>"
        period = ledger + "/calendar/years/<int:year_id>/accounting-periods/<int:period_id>"
        drafts = ledger + "/draft-accounting-transactions"
        bulk = ledger + "/accounting-transactions/bulk"
        return [
            Rule("/_sandbox/faults", endpoint="control_faults", methods=["GET", "POST"]),
            Rule("/_sandbox/health", endpoint="control_health", methods=["GET"]),
            Rule("/_sandbox/calls", endpoint="control_calls", methods=["GET", "DELETE"]),
            Rule("/_sandbox/clock/advance", endpoint="control_clock", methods=["POST"]),
            Rule("/_sandbox/transactions", endpoint="control_transactions", methods=["GET"]),
            Rule("/_sandbox/tamper", endpoint="control_tamper", methods=["POST"]),
            Rule("/ledgers", endpoint="list_ledgers", methods=["GET"]),
            Rule(ledger, endpoint="get_ledger", methods=["GET"]),
            Rule(ledger + "/calendar/years/<int:year_id>", endpoint="get_year", methods=["GET"]),
            Rule(period + "/open", endpoint="open_period", methods=["PUT"]),
            Rule(period + "/close", endpoint="close_period", methods=["PUT"]),
            Rule(period + "/history", endpoint="period_history", methods=["GET"]),
            Rule("/accounts", endpoint="list_accounts", methods=["GET"]),
            Rule("/accounts/designations", endpoint="list_designations", methods=["GET"]),
            Rule("/accounts/<int:account_id>", endpoint="get_account", methods=["GET"]),
            Rule("/account-categories", endpoint="list_categories", methods=["GET"]),
            Rule("/chart-of-accounts", endpoint="list_charts", methods=["GET"]),
            Rule(drafts, endpoint="list_drafts", methods=["GET"]),
            Rule(drafts, endpoint="create_draft", methods=["POST"]),
            Rule(drafts + "/<int:transaction_id>", endpoint="get_draft", methods=["GET"]),
            Rule(drafts + "/<int:transaction_id>", endpoint="update_draft", methods=["PUT"]),
            Rule(drafts + "/<int:transaction_id>", endpoint="delete_draft", methods=["DELETE"]),
            Rule(drafts + "/<int:transaction_id>/post", endpoint="post_draft", methods=["POST"]),
            Rule(bulk, endpoint="bulk_create", methods=["POST"]),
            Rule(bulk, endpoint="bulk_delete", methods=["DELETE"]),
            Rule(bulk + "/post", endpoint="bulk_post", methods=["POST"]),
            Rule(
                ledger + "/accounting-transactions", endpoint="list_transactions", methods=["GET"]
            ),
            Rule(
                ledger + "/accounting-transactions/<int:transaction_id>",
                endpoint="get_transaction",
                methods=["GET"],
            ),
            Rule(ledger + "/accounting-entries", endpoint="list_entries", methods=["GET"]),
            Rule(ledger + "/balance", endpoint="balance", methods=["GET"]),
            Rule("/glruns", endpoint="list_gl_runs", methods=["GET"]),
            Rule("/glruns", endpoint="create_gl_run", methods=["POST"]),
            Rule("/glruns/<int:run_id>", endpoint="get_gl_run", methods=["GET"]),
            Rule("/glruns/<int:run_id>", endpoint="delete_gl_run", methods=["DELETE"]),
            Rule("/glruns/<int:run_id>/errors", endpoint="gl_run_errors", methods=["GET"]),
            Rule(ledger + "/glruns", endpoint="ledger_gl_runs", methods=["GET"]),
            Rule("/collectors", endpoint="list_collectors", methods=["GET"]),
            Rule("/collector-runs", endpoint="list_collector_runs", methods=["GET"]),
            Rule("/collector-runs", endpoint="create_collector_run", methods=["POST"]),
            Rule("/collector-runs/<int:run_id>", endpoint="get_collector_run", methods=["GET"]),
            Rule(
                "/collector-runs/<int:run_id>/errors",
                endpoint="collector_run_errors",
                methods=["GET"],
            ),
        ]

    # --- control -----------------------------------------------------------------------------

    def _control_health(self, request: Request, body: Any) -> Response:
        return _json({"status": "ok", "transactions": len(self._transactions)})

    def _control_faults(self, request: Request, body: Any) -> Response:
        if request.method == "POST":
            if not isinstance(body, dict):
                raise ApiError(400, "BAD_REQUEST", "send a JSON object of fault settings")
            try:
                if body.get("clear"):
                    self.faults.clear()
                self.faults.update(**{k: v for k, v in body.items() if k != "clear"})
            except (TypeError, ValueError) as exc:
                raise ApiError(400, "BAD_REQUEST", str(exc)) from None
        return _json(_plain(self.faults.snapshot()))

    def _control_calls(self, request: Request, body: Any) -> Response:
        if request.method == "DELETE":
            self.calls.clear()
        return _json(
            {
                "calls": [
                    {
                        "method": c.method,
                        "path": c.path,
                        "query": c.query,
                        "body": c.body,
                        "status": c.status,
                    }
                    for c in self.calls
                ]
            }
        )

    def _control_clock(self, request: Request, body: Any) -> Response:
        if not isinstance(body, dict) or "seconds" not in body:
            raise ApiError(400, "BAD_REQUEST", 'send {"seconds": n}')
        self.clock.advance(float(body["seconds"]))
        return _json({"now": _iso(self.clock.now())})

    def _control_transactions(self, request: Request, body: Any) -> Response:
        """Every stored transaction with where it was booked (roll-forwards shown)."""
        return _json(
            {
                "transactions": [
                    dict(
                        self._transaction_json(t),
                        status=t.status,
                        requested_period_id=t.requested_period_id,
                        posted_period_id=t.posted_period_id,
                        rolled_forward=t.rolled_forward,
                    )
                    for t in self.transactions
                ]
            }
        )

    def _control_tamper(self, request: Request, body: Any) -> Response:
        """Tamper with a posted transaction behind the API (integration/sandbox/tampering.py)."""
        if not isinstance(body, dict):
            raise ApiError(400, "BAD_REQUEST", 'send {"action": "add|drop|edit|duplicate", ...}')
        try:
            transaction = self._control_tamper_apply(body)
        except (KeyError, TypeError, ValueError) as exc:
            raise ApiError(400, "BAD_REQUEST", str(exc.args[0] if exc.args else exc)) from None
        return _json(dict(self._transaction_json(transaction), status=transaction.status))

    # --- ledgers and calendar ----------------------------------------------------------------

    def _require_ledger(self, ledger_id: int) -> None:
        if ledger_id != self.ledger_id:
            raise ApiError(404, "NOT_FOUND", f"AR Ledger {ledger_id} not found")

    def _list_ledgers(self, request: Request, body: Any) -> Response:
        args = request.args
        ledger = self._ledger_json(listing=True)
        checks = {
            "id": str(ledger["id"]),
            "name": ledger["name"],
            "status": ledger["status"],
            "convert_currency": ledger["convert_currency"],
            "conversion_currency": ledger["conversion_currency"],
            "chart_of_account_id": str(ledger["chart_of_account_id"]),
            "rule_set_id": str(ledger["rule_set_id"]),
        }
        matches = all(args.get(k) is None or args.get(k) == v for k, v in checks.items())
        return self._page(request, [ledger] if matches else [])

    def _get_ledger(self, request: Request, body: Any, ledger_id: int) -> Response:
        self._require_ledger(ledger_id)
        return _json(self._ledger_json())

    def _get_year(self, request: Request, body: Any, ledger_id: int, year_id: int) -> Response:
        self._require_ledger(ledger_id)
        year = next((y for y in self.years if y.id == year_id), None)
        if year is None:
            raise ApiError(404, "NOT_FOUND", f"accounting year {year_id} not found")
        return _json(self._year_json(year))

    def _find_period(self, ledger_id: int, year_id: int, period_id: int) -> SeedPeriod:
        # The spec lists no 404 for the period endpoints: an unknown id is a bad request.
        if ledger_id != self.ledger_id:
            raise ApiError(400, "BAD_REQUEST", f"AR Ledger {ledger_id} does not exist")
        year = next((y for y in self.years if y.id == year_id), None)
        if year is None:
            raise ApiError(400, "BAD_REQUEST", f"accounting year {year_id} does not exist")
        period = next((p for p in year.periods if p.id == period_id), None)
        if period is None:
            raise ApiError(
                400, "BAD_REQUEST", f"accounting period {period_id} is not in year {year_id}"
            )
        return period

    def _set_period_open(self, period: SeedPeriod, is_open: bool) -> None:
        if period.open == is_open:
            return  # opening an open period changes nothing (safe to retry)
        now = self.clock.now()
        if period.history:
            period.history[-1]["end_date"] = now
        period.history.append(
            {"id": next(self._history_ids), "open": is_open, "start_date": now, "end_date": None}
        )
        period.open = is_open

    def _open_period(self, request: Request, body: Any, **ids: int) -> Response:
        self._set_period_open(self._find_period(**ids), True)
        return _json(self._ledger_json())

    def _close_period(self, request: Request, body: Any, **ids: int) -> Response:
        self._set_period_open(self._find_period(**ids), False)
        return _json(self._ledger_json())

    def _period_history(self, request: Request, body: Any, **ids: int) -> Response:
        period = self._find_period(**ids)
        items = [
            {
                "id": h["id"],
                "open": h["open"],
                "start_date": _iso(h["start_date"]),
                "end_date": _iso(h["end_date"]),
            }
            for h in period.history
        ]
        return self._page(request, items)

    def _ledger_json(self, *, listing: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "timezone_name": "UTC",
            "valid": True,
            "calendar": {
                "years": [self._year_json(y) for y in self.years],
                "type": "CALENDAR",
                "id": CALENDAR_ID,
                "path": [],
                "start_date": self.years[0].start_date.isoformat(),
                "end_date": self.years[-1].end_date.isoformat(),
                "time_zone": "UTC",
                "complete": False,
            },
            "id": self.ledger_id,
            "name": "ledger_sync sandbox ledger",
            "description": "Energy trading AR ledger (sandbox)",
            "status": "ACTIVE",
            "convert_currency": "NONE",
            "conversion_currency": self.currency,
            "chart_of_account_id": CHART_OF_ACCOUNTS_ID,
            "rule_set_id": 1,
            "run_mode_actuals_id": 1,
            "conversion_rate_set_id": None,
            "currency_exchange_version": None,
            "billing_account_category_ids": [1],
            "expected_customer_lifetime": 36,
            "create_zero_amount_entries": self.create_zero_amount_entries,
        }
        if listing:
            data["chart_of_account_name"] = "Sandbox chart of accounts"
            data["rule_set_name"] = "Sandbox posting rules"
            data["accounting_calendar_name"] = "Sandbox calendar"
        return data

    def _year_json(self, year: SeedYear) -> dict[str, Any]:
        return {
            "accounting-periods": [
                {
                    "type": "PERIOD",
                    "id": p.id,
                    "name": p.name,
                    "description": None,
                    "path": [CALENDAR_ID, year.id],
                    "quarter": p.quarter,
                    "start_date": p.start_date.isoformat(),
                    "end_date": p.end_date.isoformat(),
                    "time_zone": "UTC",
                    "open": p.open,
                    "parent_id": year.id,
                }
                for p in year.periods
            ],
            "type": "YEAR",
            "id": year.id,
            "name": year.name,
            "description": None,
            "path": [CALENDAR_ID],
            "start_date": year.start_date.isoformat(),
            "end_date": year.end_date.isoformat(),
            "time_zone": "UTC",
            "parent_id": CALENDAR_ID,
            "open": any(p.open for p in year.periods),
            "complete": False,
        }

    # --- accounts ----------------------------------------------------------------------------

    def _account_json(self, account: SeedAccount, *, in_chart: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": account.id,
            "designation_category": account.designation_category,
            "tract_id": 90000 + account.id,
            "chart_of_accounts": [CHART_OF_ACCOUNTS_ID],
            "number": account.number,
            "name": account.name,
            "description": None,
            "is_posting_account": account.is_posting_account,
            "designation": account.designation,
            "type": account.type,
            "status": account.status,
        }
        if in_chart:
            parent = self._accounts_by_number.get(account.parent_number or "")
            data.update(
                {
                    "parent_id": parent.id if parent else None,
                    "parent_number": parent.number if parent else None,
                    "parent_name": parent.name if parent else None,
                    "account_category_id": account.category_id,
                    "account_category_name": account.category_name,
                }
            )
        return data

    def _list_accounts(self, request: Request, body: Any) -> Response:
        args = request.args
        accounts = list(self.accounts)
        if args.get("name"):
            accounts = [a for a in accounts if args["name"].lower() in a.name.lower()]
        if args.get("account_number"):
            accounts = [a for a in accounts if a.number == args["account_number"]]
        if args.get("account_number_or_name"):
            needle = args["account_number_or_name"].lower()
            accounts = [a for a in accounts if a.number == needle or needle in a.name.lower()]
        for key, attr in (
            ("type", "type"),
            ("designation", "designation"),
            ("designation_category", "designation_category"),
        ):
            if args.get(key):
                wanted = _csv(args[key])
                accounts = [a for a in accounts if getattr(a, attr) in wanted]
        if args.get("chart_of_account") and str(CHART_OF_ACCOUNTS_ID) not in _csv(
            args["chart_of_account"]
        ):
            accounts = []
        if args.get("is_posting_account") is not None:
            wanted_posting = _bool_arg(args, "is_posting_account")
            accounts = [a for a in accounts if a.is_posting_account is wanted_posting]
        if args.get("status"):
            accounts = [a for a in accounts if a.status == args["status"]]
        if args.get("blacklist"):
            excluded = _csv(args["blacklist"])
            accounts = [a for a in accounts if str(a.id) not in excluded]
        return self._page(request, [self._account_json(a) for a in accounts])

    def _get_account(self, request: Request, body: Any, account_id: int) -> Response:
        account = self._accounts_by_id.get(account_id)
        if account is None:
            raise ApiError(404, "NOT_FOUND", f"GL account {account_id} not found")
        return _json(self._account_json(account))

    def _list_designations(self, request: Request, body: Any) -> Response:
        args = request.args
        items = [dict(d, ordinal=i) for i, d in enumerate(DESIGNATIONS)]
        if args.get("designation"):
            items = [d for d in items if args["designation"] in (d["label"], d["name"])]
        if args.get("category"):
            items = [d for d in items if d["category"] == args["category"]]
        if args.get("type"):
            items = [d for d in items if d["type"] == args["type"]]
        return _json(items)

    def _category_json(self, category: dict[str, Any], *, in_chart: bool = False) -> dict:
        data = {
            "id": category["id"],
            "tract_id": 80000 + category["id"],
            "chart_of_accounts": [CHART_OF_ACCOUNTS_ID],
            "name": category["name"],
            "description": None,
            "status": category["status"],
            "type": category["type"],
        }
        if in_chart:
            data.update({"parent_id": None, "parent_name": None})
        return data

    def _list_categories(self, request: Request, body: Any) -> Response:
        args = request.args
        items = list(self.categories)
        if args.get("name"):
            items = [c for c in items if c["name"] == args["name"]]
        if args.get("type"):
            items = [c for c in items if c["type"] in _csv(args["type"])]
        if args.get("status"):
            items = [c for c in items if c["status"] == args["status"]]
        if args.get("blacklist"):
            items = [c for c in items if str(c["id"]) not in _csv(args["blacklist"])]
        return self._page(request, [self._category_json(c) for c in items])

    def _list_charts(self, request: Request, body: Any) -> Response:
        args = request.args
        chart: dict[str, Any] = {
            "id": CHART_OF_ACCOUNTS_ID,
            "account_categories": [],
            "accounts": [],
            "ledgers": [self.ledger_id],
            "name": "Sandbox chart of accounts",
            "description": "Chart shared with the ATLAS sandbox (integration/sandbox/chart.py)",
            "status": "ACTIVE",
        }
        matches = (
            (args.get("ledger_id") in (None, str(self.ledger_id)))
            and (args.get("id") in (None, str(CHART_OF_ACCOUNTS_ID)))
            and (args.get("name") in (None, chart["name"]))
            and (not args.get("status") or "ACTIVE" in _csv(args["status"]))
            and (
                args.get("account_category_id") is None
                or args["account_category_id"] in {str(c["id"]) for c in self.categories}
            )
            and (
                args.get("account_id") is None
                or args["account_id"] in {str(a.id) for a in self.accounts}
            )
            and (
                not args.get("blacklist")
                or str(CHART_OF_ACCOUNTS_ID) not in _csv(args["blacklist"])
            )
        )
        if _bool_arg(args, "get_accounts"):
            chart["accounts"] = [self._account_json(a, in_chart=True) for a in self.accounts]
        if _bool_arg(args, "get_account_categories"):
            chart["account_categories"] = [
                self._category_json(c, in_chart=True) for c in self.categories
            ]
        return self._page(request, [chart] if matches else [])

    # --- validation and posting --------------------------------------------------------------

    def _read_entries(self, raw_entries: Any, *, account_by: str) -> list[StoredEntry]:
        """Validate one transaction's entries as the ledger would; raise TransactionInvalid."""
        if raw_entries is None or (isinstance(raw_entries, list) and not raw_entries):
            raise TransactionInvalid("the transaction has no entries")
        if not isinstance(raw_entries, list):
            raise TransactionInvalid("entries must be a list")
        entries = []
        for index, raw in enumerate(raw_entries):
            where = f"entry {index + 1}"
            if not isinstance(raw, dict):
                raise TransactionInvalid(f"{where} is not an object")
            if account_by == "number":
                number = raw.get("gl_account_num")
                if not number:
                    raise TransactionInvalid(f"{where}: gl_account_num is required")
                account = self._accounts_by_number.get(str(number))
                if account is None:
                    raise TransactionInvalid(
                        f"{where}: GL account '{number}' does not exist in the chart of accounts"
                    )
            else:
                account_id = raw.get("gl_account_id")
                account = (
                    self._accounts_by_id.get(account_id) if isinstance(account_id, int) else None
                )
                if account is None:
                    raise TransactionInvalid(
                        f"{where}: GL account id {account_id!r} does not exist"
                    )
            if not account.is_posting_account:
                raise TransactionInvalid(
                    f"{where}: GL account '{account.number}' is not a posting account"
                )
            if account.status != "ACTIVE":
                raise TransactionInvalid(f"{where}: GL account '{account.number}' is inactive")
            credit = raw.get("credit")
            if not isinstance(credit, bool):
                raise TransactionInvalid(f"{where}: credit must be true or false")
            amount, currency = _money(raw.get("amount"), where)
            occurred_on = _parse_instant(raw.get("occurred_on"))
            if occurred_on is None:
                raise TransactionInvalid(f"{where}: occurred_on is required (ISO 8601)")
            entries.append(
                StoredEntry(
                    gl_account_id=account.id,
                    gl_account_num=account.number,
                    gl_account_name=account.name,
                    credit=credit,
                    amount=amount,
                    currency=currency,
                    occurred_on=occurred_on,
                    event_date=_parse_instant(raw.get("event_date")),
                    description=raw.get("description"),
                    billing_account_num=raw.get("billing_account_num"),
                    converted_amount=raw.get("converted_amount"),
                    conversion_date=_parse_instant(raw.get("conversion_date")),
                    entry_values=raw.get("entry_values"),
                )
            )
        currencies = {e.currency for e in entries}
        if len(currencies) > 1:
            raise TransactionInvalid(
                f"entries are in several currencies ({', '.join(sorted(currencies))})"
            )
        debits = sum((e.amount for e in entries if not e.credit), Decimal("0"))
        credits = sum((e.amount for e in entries if e.credit), Decimal("0"))
        if debits != credits:
            currency = currencies.pop()
            raise TransactionInvalid(
                f"the transaction is not balanced: debits {debits} {currency}, "
                f"credits {credits} {currency}"
            )
        return entries

    def _resolve_period(self, occurred_on: datetime) -> tuple[int | None, SeedPeriod]:
        """(the period the date falls in, the period it is booked into)."""
        day = occurred_on.date()
        periods = sorted(self.periods, key=lambda p: p.start_date)
        home = self.period_for(day)
        if home is None and day > periods[-1].end_date:
            raise TransactionInvalid(f"no accounting period covers {day.isoformat()}")
        if home is not None and home.open:
            return home.id, home
        # Closed (or before the calendar): the ledger books into the next open period.
        later = [p for p in periods if p.start_date > day and p.open]
        if not later:
            raise TransactionInvalid(
                f"{day.isoformat()} is in a closed period and no later period is open",
                code=CODE_CONFLICT,
            )
        return (home.id if home else None), later[0]

    def _post(self, transaction: StoredTransaction) -> None:
        """Book a validated draft: periods, entry ids, posted_on. Raises TransactionInvalid."""
        # create_zero_amount_entries=false: the ledger drops zero-amount lines.
        kept = [e for e in transaction.entries if e.amount != 0 or self.create_zero_amount_entries]
        if not kept:
            raise TransactionInvalid("the transaction has no non-zero entries")
        resolved = [self._resolve_period(e.occurred_on) for e in kept]
        now = self.clock.now()
        for entry, (requested, booked) in zip(kept, resolved, strict=True):
            entry.requested_period_id = requested
            entry.accounting_period_id = booked.id
            entry.posted_on = now
            entry.id = next(self._entry_ids)
        transaction.entries = kept
        transaction.status = POSTED
        transaction.posted_on = now

    def _new_transaction(
        self,
        entries: list[StoredEntry],
        *,
        source_transaction_reference: Any,
        source_batch_reference: Any,
        target_batch_key: str | None,
    ) -> StoredTransaction:
        transaction = StoredTransaction(
            id=next(self._transaction_ids),
            ledger_id=self.ledger_id,
            status=DRAFT,
            source_transaction_reference=_opt_str(source_transaction_reference),
            source_batch_reference=_opt_str(source_batch_reference),
            target_batch_key=target_batch_key,
            entries=entries,
            created_on=self.clock.now(),
        )
        return transaction

    # --- drafts ------------------------------------------------------------------------------

    def _draft(self, ledger_id: int, transaction_id: int) -> StoredTransaction:
        self._require_ledger(ledger_id)
        transaction = self._transactions.get(transaction_id)
        if transaction is None:
            raise ApiError(
                404, "NOT_FOUND", f"draft accounting transaction {transaction_id} not found"
            )
        return transaction

    def _list_drafts(self, request: Request, body: Any, ledger_id: int) -> Response:
        self._require_ledger(ledger_id)
        args = request.args
        items = [t for t in self.transactions if not t.is_posted]
        items = _filter_transactions(items, args, billing_key="billing_account_num")
        return self._page(request, items, render=self._transaction_json)

    def _create_draft(self, request: Request, body: Any, ledger_id: int) -> Response:
        self._require_ledger(ledger_id)
        if not isinstance(body, dict):
            raise ApiError(400, "BAD_REQUEST", "send a JSON object with entries")
        try:
            entries = self._read_entries(body.get("entries"), account_by="id")
        except TransactionInvalid as exc:
            raise ApiError(400, "VALIDATION_ERROR", exc.message) from None
        transaction = self._new_transaction(
            entries,
            source_transaction_reference=body.get("source_transaction_reference"),
            source_batch_reference=body.get("source_batch_reference"),
            target_batch_key=None,
        )
        self._transactions[transaction.id] = transaction
        return _json(self._transaction_json(transaction), status=201)

    def _get_draft(self, request: Request, body: Any, ledger_id: int, transaction_id: int):
        transaction = self._draft(ledger_id, transaction_id)
        if transaction.is_posted:
            raise ApiError(
                404, "NOT_FOUND", f"{transaction_id} is a posted transaction, not a draft"
            )
        return _json(self._transaction_json(transaction))

    def _update_draft(self, request: Request, body: Any, ledger_id: int, transaction_id: int):
        transaction = self._draft(ledger_id, transaction_id)
        if transaction.is_posted:
            raise ApiError(
                409,
                "TRANSACTION_POSTED",
                f"accounting transaction {transaction_id} is posted and cannot be changed; "
                "post a reversing transaction instead",
            )
        if not isinstance(body, dict):
            raise ApiError(400, "BAD_REQUEST", "send a JSON object with entries")
        try:
            transaction.entries = self._read_entries(body.get("entries"), account_by="id")
        except TransactionInvalid as exc:
            raise ApiError(400, "VALIDATION_ERROR", exc.message) from None
        return _json(self._transaction_json(transaction))

    def _delete_draft(self, request: Request, body: Any, ledger_id: int, transaction_id: int):
        transaction = self._draft(ledger_id, transaction_id)
        if transaction.is_posted:
            raise ApiError(
                400,
                "TRANSACTION_POSTED",
                f"accounting transaction {transaction_id} is posted and cannot be deleted",
            )
        del self._transactions[transaction_id]
        return Response(status=200)

    def _post_draft(self, request: Request, body: Any, ledger_id: int, transaction_id: int):
        transaction = self._draft(ledger_id, transaction_id)
        if transaction.is_posted:
            raise ApiError(
                400, "TRANSACTION_POSTED", f"accounting transaction {transaction_id} is posted"
            )
        try:
            self._post(transaction)
        except TransactionInvalid as exc:
            raise ApiError(400, "VALIDATION_ERROR", exc.message) from None
        return _json(self._transaction_json(transaction))

    # --- bulk --------------------------------------------------------------------------------

    def _bulk_create(self, request: Request, body: Any, ledger_id: int) -> Response:
        self._require_ledger(ledger_id)
        auto_post = _bool_arg(request.args, "auto_post", default=False)
        if not isinstance(body, list):
            raise ApiError(400, "BAD_REQUEST", "send a JSON list of transactions")
        batch_key = f"MANUAL-{next(self._batch_numbers):06d}"
        results = []
        for raw in body:
            refs = raw if isinstance(raw, dict) else {}
            try:
                if not isinstance(raw, dict):
                    raise TransactionInvalid("a transaction must be a JSON object")
                entries = self._read_entries(raw.get("entries"), account_by="number")
                transaction = self._new_transaction(
                    entries,
                    source_transaction_reference=raw.get("source_transaction_reference"),
                    source_batch_reference=raw.get("source_batch_reference"),
                    target_batch_key=batch_key,
                )
                if auto_post:
                    self._post(transaction)
            except TransactionInvalid as exc:
                results.append(
                    self._failed_result(
                        code=exc.code,
                        message=exc.message,
                        source_transaction_reference=refs.get("source_transaction_reference"),
                        source_batch_reference=refs.get("source_batch_reference"),
                        target_batch_key=batch_key,
                    )
                )
                continue
            self._transactions[transaction.id] = transaction
            results.append(
                dict(
                    self._transaction_json(transaction),
                    code=CODE_CREATED,
                    error_message=None,
                )
            )
        return _json(results)

    def _failed_result(self, *, code: int, message: str, **refs: Any) -> dict[str, Any]:
        return {
            "id": refs.pop("id", None),
            "target_batch_key": refs.get("target_batch_key"),
            "source_batch_reference": refs.get("source_batch_reference"),
            "source_transaction_reference": refs.get("source_transaction_reference"),
            "code": code,
            "error_message": message,
            "entries": [],
        }

    def _bulk_ids(self, request: Request, body: Any) -> tuple[str, list[str]]:
        id_type = request.args.get("id_type")
        if id_type not in ("TRANSACTION_ID", "SOURCE_TRANSACTION_REFERENCE"):
            raise ApiError(
                400,
                "BAD_REQUEST",
                "id_type must be TRANSACTION_ID or SOURCE_TRANSACTION_REFERENCE",
            )
        if not isinstance(body, list) or not all(isinstance(v, str | int) for v in body):
            raise ApiError(400, "BAD_REQUEST", "send a JSON list of ids")
        return id_type, [str(v) for v in body]

    def _matching(self, id_type: str, value: str) -> list[StoredTransaction]:
        if id_type == "TRANSACTION_ID":
            if not value.isdigit():
                return []
            found = self._transactions.get(int(value))
            return [found] if found else []
        return [t for t in self.transactions if t.source_transaction_reference == value]

    def _bulk_post(self, request: Request, body: Any, ledger_id: int) -> Response:
        self._require_ledger(ledger_id)
        id_type, ids = self._bulk_ids(request, body)
        results = []
        for value in ids:
            matches = self._matching(id_type, value)
            refs: dict[str, Any] = {}
            if id_type == "TRANSACTION_ID":
                refs["id"] = int(value) if value.isdigit() else None
            else:
                refs["source_transaction_reference"] = value
            drafts = [t for t in matches if not t.is_posted]
            if not matches:
                results.append(
                    self._failed_result(
                        code=CODE_NOT_FOUND, message=f"no draft transaction {value!r}", **refs
                    )
                )
                continue
            if not drafts:
                results.append(
                    self._failed_result(
                        code=CODE_CONFLICT,
                        message=f"transaction {value!r} is already posted",
                        **refs,
                    )
                )
                continue
            for draft in drafts:
                try:
                    self._post(draft)
                except TransactionInvalid as exc:
                    results.append(
                        self._failed_result(
                            code=exc.code,
                            message=exc.message,
                            id=draft.id,
                            source_transaction_reference=draft.source_transaction_reference,
                            source_batch_reference=draft.source_batch_reference,
                            target_batch_key=draft.target_batch_key,
                        )
                    )
                    continue
                results.append(
                    dict(self._transaction_json(draft), code=CODE_POSTED, error_message=None)
                )
        return _json(results)

    def _bulk_delete(self, request: Request, body: Any, ledger_id: int) -> Response:
        self._require_ledger(ledger_id)
        id_type, ids = self._bulk_ids(request, body)
        to_delete: list[StoredTransaction] = []
        for value in ids:
            matches = self._matching(id_type, value)
            if not matches:
                raise ApiError(400, "BAD_REQUEST", f"no draft transaction {value!r}")
            drafts = [t for t in matches if not t.is_posted]
            if not drafts:
                raise ApiError(
                    409,
                    "TRANSACTION_POSTED",
                    f"transaction {value!r} is posted and cannot be deleted",
                )
            to_delete.extend(drafts)
        for transaction in to_delete:
            self._transactions.pop(transaction.id, None)
        return Response(status=200)

    # --- posted transactions, entries, balance -----------------------------------------------

    def _list_transactions(self, request: Request, body: Any, ledger_id: int) -> Response:
        self._require_ledger(ledger_id)
        items = _filter_transactions(
            self.posted_transactions(), request.args, billing_key="billing_account_number"
        )
        args = request.args
        period_from = _date_arg(args, "accounting_period_from")
        period_to = _date_arg(args, "accounting_period_to", upper=True)
        if period_from or period_to:
            kept = []
            for t in items:
                booked = self.period(t.posted_period_id) if t.posted_period_id else None
                if booked is None:
                    continue
                start = _day_start(booked.start_date)
                end = _day_start(booked.end_date + timedelta(days=1)) - timedelta(microseconds=1)
                if (period_from is None or start >= period_from) and (
                    period_to is None or end <= period_to
                ):
                    kept.append(t)
            items = kept
        return self._page(request, items, render=self._transaction_json)

    def _get_transaction(self, request: Request, body: Any, ledger_id: int, transaction_id: int):
        self._require_ledger(ledger_id)
        transaction = self._transactions.get(transaction_id)
        if transaction is None or not transaction.is_posted:
            raise ApiError(404, "NOT_FOUND", f"accounting transaction {transaction_id} not found")
        return _json(self._transaction_json(transaction))

    def _posted_entries(self) -> list[tuple[StoredTransaction, StoredEntry]]:
        return [(t, e) for t in self.posted_transactions() for e in t.entries]

    def _list_entries(self, request: Request, body: Any, ledger_id: int) -> Response:
        self._require_ledger(ledger_id)
        args = request.args
        pairs = self._posted_entries()
        pairs = [(t, e) for t, e in pairs if _entry_matches(t, e, args)]
        max_records = _int_arg(args, "max_records", default=1000, minimum=1)
        pairs = pairs[:max_records]
        return self._page(request, pairs, render=lambda pair: self._entry_json(*pair))

    def _balance(self, request: Request, body: Any, ledger_id: int) -> Response:
        self._require_ledger(ledger_id)
        args = request.args
        amount_type = args.get("amount_type", "DEBIT")
        if amount_type not in ("DEBIT", "CREDIT"):
            raise ApiError(400, "BAD_REQUEST", "amount_type must be DEBIT or CREDIT")
        parents = args.get("include_parent_accounts", "EXCLUDE")
        if parents not in ("EXCLUDE", "INCLUDE", "ONLY"):
            raise ApiError(400, "BAD_REQUEST", "include_parent_accounts: EXCLUDE, INCLUDE or ONLY")
        start = _date_arg(args, "start_date")
        end = _date_arg(args, "end_date", upper=True)
        sums: dict[tuple[str, str], Decimal] = {}
        for _transaction, entry in self._posted_entries():
            booked = self.period(entry.accounting_period_id)
            # A rolled-forward entry counts from the first day of the period it was booked in.
            when = max(entry.occurred_on, _day_start(booked.start_date))
            if (start and when < start) or (end and when > end):
                continue
            if args.get("currency") and entry.currency != args["currency"]:
                continue
            if args.get("billing_account_number") and (
                entry.billing_account_num != args["billing_account_number"]
            ):
                continue
            signed = entry.amount if entry.credit == (amount_type == "CREDIT") else -entry.amount
            account = self._accounts_by_number[entry.gl_account_num]
            targets = []
            if parents in ("EXCLUDE", "INCLUDE"):
                targets.append(account.number)
            if parents in ("INCLUDE", "ONLY") and account.parent_number:
                targets.append(account.parent_number)
            for number in targets:
                key = (number, entry.currency)
                sums[key] = sums.get(key, Decimal("0")) + signed
        lines = []
        for (number, currency), amount in sorted(sums.items()):
            account = self._accounts_by_number[number]
            line = {
                "entity_type": "GL_ACCOUNT",
                "gl_account_number": number,
                "gl_account_name": account.name,
                "billing_account_category_name": None,
                "billing_account_number": args.get("billing_account_number"),
                "currency": currency,
                "gl_account_category_name": account.category_name,
                "gl_account_category_parent_name": None,
                "account_designation_type": account.designation,
                "amounts": [{"amount": amount, "currency": currency}],
                "converted_amount": None,
            }
            if not _balance_line_matches(line, args):
                continue
            lines.append(line)
        return _json(lines)

    def _entry_json(self, transaction: StoredTransaction, entry: StoredEntry) -> dict[str, Any]:
        data = self._draft_entry_json(transaction, entry)
        data.update(
            {
                "id": entry.id,
                "charge_category": None,
                "transaction_id": str(transaction.id),
                "gl_posting_rule": None,
                "gl_posting_rule_name": None,
                "charge_info_id": None,
                "charge_info_state_id": None,
                "gl_run_id": None,
                "gl_posting_rule_id": None,
                "gl_run_mode_id": None,
                "is_rev_rec": False,
                "tract_transaction_id": None,
            }
        )
        return data

    def _draft_entry_json(self, transaction: StoredTransaction, entry: StoredEntry) -> dict:
        return {
            "tenant_id": TENANT_ID,
            "accounting_period_id": entry.accounting_period_id,
            "occurred_on": _iso(entry.occurred_on),
            "event_date": _iso(entry.event_date),
            "posted_on": _iso(entry.posted_on),
            "credit": entry.credit,
            "amount": {"amount": entry.amount, "currency": entry.currency},
            "converted_amount": entry.converted_amount,
            "convert_currency": False,
            "conversion_rate": None,
            "conversion_date": _iso(entry.conversion_date),
            "description": entry.description,
            "gl_account_id": entry.gl_account_id,
            "gl_account_num": entry.gl_account_num,
            "gl_account_name": entry.gl_account_name,
            "billing_account_num": entry.billing_account_num,
            "billing_account_name": None,
            "ledger_id": transaction.ledger_id,
            "gl_run_type": "MANUAL",
            "manual": True,
            "charge_info_type": "MANUAL",
            "target_batch_key": transaction.target_batch_key,
            "source_batch_reference": transaction.source_batch_reference,
            "source_transaction_reference": transaction.source_transaction_reference,
            "entry_values": entry.entry_values,
        }

    def _transaction_json(self, transaction: StoredTransaction) -> dict[str, Any]:
        if transaction.is_posted:
            entries = [self._entry_json(transaction, e) for e in transaction.entries]
        else:
            entries = [self._draft_entry_json(transaction, e) for e in transaction.entries]
        return {
            "id": transaction.id,
            "ledger_id": transaction.ledger_id,
            "target_batch_key": transaction.target_batch_key,
            "source_batch_reference": transaction.source_batch_reference,
            "source_transaction_reference": transaction.source_transaction_reference,
            "entries": entries,
        }

    # --- runs and collectors -----------------------------------------------------------------

    def _seed_runs(self) -> None:
        start = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
        ok = self._add_gl_run(status="COMPLETE", when=start)
        ok.data["run_trigger_type"] = "SCHEDULED"
        failed = self._add_gl_run(status="ERROR", when=start + timedelta(days=1))
        for message in (
            "Charge info 88123 has no posting rule for charge category 'Balancing'",
            "Billing account 'BA-4711' has no account category",
        ):
            failed.errors.append(
                {
                    "id": next(self._run_error_ids),
                    "collector_run_id": None,
                    "gl_run_id": failed.data["id"],
                    "error_message": message,
                }
            )
        failed.data["num_errors"] = len(failed.errors)
        run_id = next(self._run_ids)
        self._collector_runs[run_id] = _Run(
            data=self._collector_run_json(run_id, "COMPLETE", start, {"type": "BILLING_EVENTS"})
        )
        run_id = next(self._run_ids)
        errored = _Run(
            data=self._collector_run_json(
                run_id, "ERROR", start + timedelta(hours=1), {"type": "REVENUE_RECOGNITION"}
            )
        )
        errored.errors.append(
            {
                "id": next(self._run_error_ids),
                "collector_run_id": run_id,
                "gl_run_id": None,
                "error_message": "Revenue schedule 311 references an unknown product",
            }
        )
        errored.data["num_errors"] = 1
        self._collector_runs[run_id] = errored

    def _add_gl_run(
        self, *, status: str, when: datetime, ledger_id: int | None = None, **extra: Any
    ) -> _Run:
        run_id = next(self._run_ids)
        run = _Run(
            data={
                "id": run_id,
                "date_started": _iso(when),
                "date_ended": _iso(when + timedelta(minutes=4)),
                "status": status,
                "num_errors": 0,
                "run_trigger_type": "MANUAL",
                "gl_run_mode_id": extra.get("gl_run_mode_id", 1),
                "ledger_id": ledger_id or self.ledger_id,
                "run_to_date": extra.get("run_to_date") or _iso(when),
            }
        )
        self._gl_runs[run_id] = run
        return run

    def _collector_run_json(
        self, run_id: int, status: str, when: datetime, body: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "id": run_id,
            "tenant_id": TENANT_ID,
            "gl_run_mode_id": 1,
            "date_started": _iso(when),
            "date_ended": _iso(when + timedelta(minutes=2)),
            "status": status,
            "run_trigger_type": "MANUAL",
            "num_errors": 0,
            "type": body.get("type"),
            "collector_operations": list(body.get("collector_operations") or []),
            "data_fetch_from_date": body.get("data_fetch_from_date"),
            "data_fetch_to_date": body.get("data_fetch_to_date"),
            "overlap_fetch_time": body.get("overlap_fetch_time"),
        }

    def _gl_run(self, run_id: int) -> _Run:
        run = self._gl_runs.get(run_id)
        if run is None:
            raise ApiError(404, "NOT_FOUND", f"AR Ledger run {run_id} not found")
        return run

    def _list_gl_runs(self, request: Request, body: Any) -> Response:
        status = request.args.get("status")
        runs = [r.data for _, r in sorted(self._gl_runs.items())]
        if status:
            runs = [r for r in runs if r["status"] == status]
        return self._page(request, runs)

    def _ledger_gl_runs(self, request: Request, body: Any, ledger_id: int) -> Response:
        self._require_ledger(ledger_id)
        return _json([r.data for _, r in sorted(self._gl_runs.items())])

    def _create_gl_run(self, request: Request, body: Any) -> Response:
        if not isinstance(body, dict) or body.get("ledger_id") != self.ledger_id:
            raise ApiError(
                400, "BAD_REQUEST", f"ledger_id must be an existing ledger ({self.ledger_id})"
            )
        run = self._add_gl_run(
            status="COMPLETE",
            when=self.clock.now(),
            gl_run_mode_id=body.get("gl_run_mode_id", 1),
            run_to_date=body.get("run_to_date"),
        )
        return _json(run.data, status=201)

    def _get_gl_run(self, request: Request, body: Any, run_id: int) -> Response:
        return _json(self._gl_run(run_id).data)

    def _delete_gl_run(self, request: Request, body: Any, run_id: int) -> Response:
        self._gl_run(run_id)
        del self._gl_runs[run_id]
        return Response(status=200)

    def _gl_run_errors(self, request: Request, body: Any, run_id: int) -> Response:
        return self._page(request, self._gl_run(run_id).errors)

    def _list_collectors(self, request: Request, body: Any) -> Response:
        items = seed_collectors()
        for key in ("group", "category"):
            if request.args.get(key):
                items = [c for c in items if c[key] == request.args[key]]
        return self._page(request, items)

    def _collector_run(self, run_id: int) -> _Run:
        run = self._collector_runs.get(run_id)
        if run is None:
            raise ApiError(404, "NOT_FOUND", f"collector run {run_id} not found")
        return run

    def _list_collector_runs(self, request: Request, body: Any) -> Response:
        return self._page(request, [r.data for _, r in sorted(self._collector_runs.items())])

    def _create_collector_run(self, request: Request, body: Any) -> Response:
        if not isinstance(body, dict) or not body.get("type"):
            raise ApiError(400, "BAD_REQUEST", "type is required")
        run_id = next(self._run_ids)
        run = _Run(data=self._collector_run_json(run_id, "COMPLETE", self.clock.now(), body))
        self._collector_runs[run_id] = run
        return _json(run.data, status=201)

    def _get_collector_run(self, request: Request, body: Any, run_id: int) -> Response:
        return _json(self._collector_run(run_id).data)

    def _collector_run_errors(self, request: Request, body: Any, run_id: int) -> Response:
        return self._page(request, self._collector_run(run_id).errors)

    # --- paging ------------------------------------------------------------------------------

    def _page(
        self, request: Request, items: list[Any], *, render: Callable[[Any], Any] | None = None
    ) -> Response:
        """One page of `items`; `render` turns an item into JSON for the page's items only
        (rendering the whole list for every page made listing a large ledger quadratic)."""
        page_number = _int_arg(request.args, "page_number", default=1, minimum=1)
        requested_size = _int_arg(request.args, "page_size", default=DEFAULT_PAGE_SIZE, minimum=1)
        page_size = min(requested_size, MAX_PAGE_SIZE)
        total = len(items)
        start = (page_number - 1) * page_size
        chunk = items[start : start + page_size]
        if render is not None:
            chunk = [render(item) for item in chunk]
        response = _json(chunk)
        response.headers["X-Total-Count"] = str(total)
        response.headers["X-Elements-Count"] = str(len(chunk))
        response.headers["X-Total-Pages"] = str(math.ceil(total / page_size))
        return response


_LOOPBACK_ADDRESSES = frozenset({"127.0.0.1", "::1", "localhost"})


def create_gotransverse_sandbox(
    *,
    seed: int = 2026,
    api_key: str = "sandbox-api-key",
    clock: SandboxClock | None = None,
    faults: FaultConfig | None = None,
    max_recorded_calls: int | None = 10_000,
) -> GotransverseSandbox:
    """The AR Ledger sandbox, seeded: ledger 1 (EUR), the shared chart, 2025-2026 calendar.

    Without `faults`, a FaultConfig(seed=seed, error_statuses=(503,)) with no faults switched
    on; the control endpoint POST /_sandbox/faults changes it while serving.
    """
    return GotransverseSandbox(
        seed=seed,
        api_key=api_key,
        clock=clock,
        faults=faults,
        max_recorded_calls=max_recorded_calls,
    )


# --- helpers -------------------------------------------------------------------------------------


def _json(data: Any, *, status: int = 200) -> Response:
    return Response(wire.dumps(data), status=status, mimetype="application/json")


def _error(status: int, code: str, message: str) -> Response:
    return _json({"code": code, "message": message}, status=status)


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _csv(value: str) -> set[str]:
    return {part.strip() for part in value.split(",") if part.strip()}


def _bool_arg(args: Any, name: str, *, default: bool = False) -> bool:
    value = args.get(name)
    if value is None:
        return default
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise ApiError(400, "BAD_REQUEST", f"{name} must be true or false, got {value!r}")


def _int_arg(args: Any, name: str, *, default: int, minimum: int) -> int:
    value = args.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ApiError(400, "BAD_REQUEST", f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ApiError(400, "BAD_REQUEST", f"{name} must be at least {minimum}, got {number}")
    return number


def _parse_instant(value: Any) -> datetime | None:
    """ISO 8601 date or date-time; a value without zone is UTC. None when absent or unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    if len(text) == 16 and text[10:11] == "+":  # "2015-12-12+02:00": a date with an offset
        text = text[:10] + "T00:00" + text[10:]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _date_arg(args: Any, name: str, *, upper: bool = False) -> datetime | None:
    """A date filter from the query; unreadable is a 400, as the ledger would answer."""
    value = args.get(name)
    if value is None or value == "":
        return None
    parsed = _parse_bound(value) if upper else _parse_instant(value)
    if parsed is None:
        raise ApiError(400, "BAD_REQUEST", f"{name} must be an ISO 8601 date, got {value!r}")
    return parsed


def _parse_bound(value: Any) -> datetime | None:
    """An upper bound: a bare date means the whole of that day."""
    parsed = _parse_instant(value)
    if parsed is not None and isinstance(value, str) and len(value.strip()) <= 11:
        return parsed + timedelta(days=1) - timedelta(microseconds=1)
    return parsed


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _money(value: Any, where: str) -> tuple[Decimal, str]:
    if not isinstance(value, dict):
        raise TransactionInvalid(f"{where}: amount must be an object with amount and currency")
    raw_amount, currency = value.get("amount"), value.get("currency")
    if isinstance(raw_amount, bool) or raw_amount is None:
        raise TransactionInvalid(f"{where}: amount.amount is required")
    try:
        amount = Decimal(str(raw_amount))
    except InvalidOperation:
        raise TransactionInvalid(f"{where}: amount.amount must be a number") from None
    if not amount.is_finite():
        raise TransactionInvalid(f"{where}: amount.amount must be a finite number")
    if amount < 0:
        raise TransactionInvalid(f"{where}: amount must not be negative; use the credit flag")
    if amount.as_tuple().exponent < -2:  # type: ignore[operator]
        raise TransactionInvalid(f"{where}: amount {amount} has more than 2 decimal places")
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise TransactionInvalid(f"{where}: amount.currency must be an ISO 4217 code")
    return amount, currency.upper()


def _filter_transactions(
    items: Iterable[StoredTransaction], args: Any, *, billing_key: str
) -> list[StoredTransaction]:
    date_from = _date_arg(args, "transaction_date_from")
    date_to = _date_arg(args, "transaction_date_to", upper=True)
    posted_from = _date_arg(args, "posted_on_from")
    posted_to = _date_arg(args, "posted_on_to", upper=True)
    kept = []
    for t in items:
        first = t.entries[0] if t.entries else None
        when = first.occurred_on if first else None
        if date_from and (when is None or when < date_from):
            continue
        if date_to and (when is None or when > date_to):
            continue
        if posted_from and (t.posted_on is None or t.posted_on < posted_from):
            continue
        if posted_to and (t.posted_on is None or t.posted_on > posted_to):
            continue
        for key in ("source_transaction_reference", "source_batch_reference"):
            if args.get(key) is not None and getattr(t, key) != args[key]:
                break
        else:
            if args.get(billing_key) and not any(
                e.billing_account_num == args[billing_key] for e in t.entries
            ):
                continue
            if args.get("gl_account_number") and not any(
                e.gl_account_num == args["gl_account_number"] for e in t.entries
            ):
                continue
            if args.get("transaction_type") and "MANUAL" not in _csv(args["transaction_type"]):
                continue
            if args.get("charge_info_id") or args.get("billing_account_category_name"):
                continue  # manual transactions carry neither
            kept.append(t)
    return kept


def _entry_matches(t: StoredTransaction, e: StoredEntry, args: Any) -> bool:
    checks = (
        ("transaction_date_from", lambda v: e.occurred_on >= v, _parse_instant),
        ("transaction_date_to", lambda v: e.occurred_on <= v, _parse_bound),
        ("posted_on_from", lambda v: e.posted_on is not None and e.posted_on >= v, _parse_instant),
        ("posted_on_to", lambda v: e.posted_on is not None and e.posted_on <= v, _parse_bound),
    )
    for name, test, parse in checks:
        if args.get(name):
            value = parse(args[name])
            if value is None:
                raise ApiError(400, "BAD_REQUEST", f"{name} must be an ISO 8601 date")
            if not test(value):
                return False
    exact = {
        "billing_account_number": e.billing_account_num,
        "gl_account_number": e.gl_account_num,
        "transaction_id": str(t.id),
        "target_batch_key": t.target_batch_key,
        "source_batch_reference": t.source_batch_reference,
        "source_transaction_reference": t.source_transaction_reference,
        "invoice_number": (e.entry_values or {}).get("invoice_number"),
    }
    for name, actual in exact.items():
        if args.get(name) is not None and args[name] != actual:
            return False
    if args.get("transaction_type") and "MANUAL" not in _csv(args["transaction_type"]):
        return False
    return not (args.get("charge_info_id") or args.get("billing_account_category_name"))


def _balance_line_matches(line: dict[str, Any], args: Any) -> bool:
    for name in (
        "gl_account_number",
        "gl_account_category_name",
        "gl_account_category_parent_name",
        "account_designation_type",
        "billing_account_category_name",
    ):
        if args.get(name) and line.get(name) != args[name]:
            return False
    return True
