"""The Gotransverse AR Ledger API 3.10 client.

One responsibility per module: errors.py maps failures to types, records.py parses what comes
back, paging.py walks every list; this module is the transport (X-Api-Key on every call, JSON
with exact Decimals, retries) and one method per endpoint the project uses.

Retries: 503, timeouts and connection failures are retried with capped exponential backoff and
jitter (tenacity, with the injected `sleep`); no other 4xx/5xx is. Writes that would book money
twice if repeated (bulk create, draft create, run creation) are retried only when the request
surely never reached the ledger (connection refused, connect timeout). A 503, a timeout after
sending or a connection broken mid-request raises with `outcome_unknown=True` instead: the
spec does not promise that a 503 means "nothing was applied" (a proxy may answer 503 after the
ledger committed), and the ledger does not reject a duplicate source_transaction_reference, so
the caller looks the references up before sending again. Posting drafts is safe to repeat (a
second post of the same draft is refused, never booked twice), so it is retried like a read.

Redirects are never followed: requests would resend the X-Api-Key header (and the body) to
whatever host a 3xx names; a 3xx is an UnexpectedResponseError.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal, TypeVar

import requests
import tenacity
from tenacity import retry_if_exception, stop_after_attempt, wait_exponential_jitter

from integration import wire
from integration.gotransverse.errors import (
    GotransverseConnectionError,
    GotransverseError,
    GotransverseTimeoutError,
    NotFoundError,
    UnexpectedResponseError,
    error_for_status,
)
from integration.gotransverse.paging import MAX_PAGE_SIZE, Page, Paginator, capped_page_size
from integration.gotransverse.records import (
    ID_TYPES,
    AccountCategory,
    AccountDesignation,
    AccountingEntry,
    AccountingPeriod,
    AccountingTransaction,
    Balance,
    BulkOutcome,
    BulkTransactionResult,
    CalendarYear,
    ChartOfAccounts,
    Collector,
    CollectorRun,
    DraftAccountingTransaction,
    EntryInput,
    GLAccount,
    GLRun,
    GotransverseRecord,
    Ledger,
    PeriodHistoryEntry,
    RecordError,
    RunError,
    TransactionInput,
    _Reader,
    _wire_datetime,
)
from integration.http import TimeoutSession

logger = logging.getLogger(__name__)

IdType = Literal["TRANSACTION_ID", "SOURCE_TRANSACTION_REFERENCE"]
DateLike = datetime | date | str
R = TypeVar("R", bound=GotransverseRecord)

_NO_BODY = object()


@dataclass
class ClientStats:
    """What this client has done: HTTP requests sent (every attempt) and retries made."""

    requests: int = 0
    retries: int = 0


@dataclass(frozen=True)
class _Answer:
    status: int
    body: Any
    headers: Mapping[str, str]


class GotransverseClient:
    """A client for one AR Ledger tenant. Options are keyword-only.

    base_url: e.g. "https://api.gotransverse.com/revenue/v3.10" or the sandbox's URL.
    api_key: sent as X-Api-Key on every call; never logged.
    timeout: seconds per HTTP attempt. max_retries: retries after the first attempt (0 = none).
    sleep: how the client waits between retries (inject a fake in tests).
    session: a requests.Session to reuse (default: integration.http.TimeoutSession).
    page_size: records per list page; above 50 (the spec's maximum) it is capped at 50.
    backoff_initial / backoff_max: first wait and cap, in seconds, of the exponential backoff.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout: float = 30.0,
        max_retries: int = 5,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
        page_size: int = MAX_PAGE_SIZE,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
    ):
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if not api_key:
            raise ValueError("api_key is required (GOTRANSVERSE_API_KEY)")
        if timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        if backoff_initial < 0 or backoff_max < backoff_initial:
            raise ValueError("backoff needs 0 <= backoff_initial <= backoff_max")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.page_size = capped_page_size(page_size)
        self._sleep = sleep
        self._session = session if session is not None else TimeoutSession(timeout=timeout)
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self.stats = ClientStats()

    def __repr__(self) -> str:
        return f"<GotransverseClient {self.base_url}>"

    # --- AR Ledgers ------------------------------------------------------------------------

    def list_ledgers(
        self,
        *,
        id: int | None = None,
        name: str | None = None,
        status: str | None = None,
        convert_currency: str | None = None,
        conversion_currency: str | None = None,
        chart_of_account_id: int | None = None,
        rule_set_id: int | None = None,
    ) -> Paginator[Ledger]:
        """GET /ledgers (paged). status: ACTIVE or INACTIVE; convert_currency: NONE, GL or
        ACCOUNT_CATEGORY; conversion_currency: an ISO 4217 code."""
        return self._paged(
            "/ledgers",
            Ledger,
            {
                "id": id,
                "name": name,
                "status": status,
                "convert_currency": convert_currency,
                "conversion_currency": conversion_currency,
                "chart_of_account_id": chart_of_account_id,
                "rule_set_id": rule_set_id,
            },
        )

    def get_ledger(self, ledger_id: int) -> Ledger:
        """GET /ledgers/{id}: the ledger with its calendar (years and accounting periods)."""
        return self._one("GET", f"/ledgers/{_id(ledger_id)}", Ledger)

    # --- Calendar: years and accounting periods ------------------------------------------------

    def list_calendar_years(self, ledger_id: int) -> tuple[CalendarYear, ...]:
        """The ledger's accounting years with their periods (from GET /ledgers/{id})."""
        return self.get_ledger(ledger_id).years

    def get_calendar_year(self, ledger_id: int, year_id: int) -> CalendarYear:
        """GET /ledgers/{id}/calendar/years/{yid}."""
        return self._one(
            "GET", f"/ledgers/{_id(ledger_id)}/calendar/years/{_id(year_id)}", CalendarYear
        )

    def list_accounting_periods(self, ledger_id: int) -> tuple[AccountingPeriod, ...]:
        """Every accounting period of the ledger's calendar, in date order."""
        return self.get_ledger(ledger_id).accounting_periods

    def open_accounting_period(self, ledger_id: int, year_id: int, period_id: int) -> Ledger:
        """PUT .../accounting-periods/{pid}/open; answers the ledger with its calendar."""
        return self._one("PUT", _period_path(ledger_id, year_id, period_id) + "/open", Ledger)

    def close_accounting_period(self, ledger_id: int, year_id: int, period_id: int) -> Ledger:
        """PUT .../accounting-periods/{pid}/close; answers the ledger with its calendar."""
        return self._one("PUT", _period_path(ledger_id, year_id, period_id) + "/close", Ledger)

    def list_accounting_period_history(
        self, ledger_id: int, year_id: int, period_id: int
    ) -> Paginator[PeriodHistoryEntry]:
        """GET .../accounting-periods/{pid}/history (paged): the period's open/close history."""
        return self._paged(
            _period_path(ledger_id, year_id, period_id) + "/history", PeriodHistoryEntry, {}
        )

    # --- GL accounts and chart of accounts --------------------------------------------------------

    def list_gl_accounts(
        self,
        *,
        name: str | None = None,
        account_number: str | None = None,
        account_number_or_name: str | None = None,
        type: str | Iterable[str] | None = None,
        designation: str | Iterable[str] | None = None,
        designation_category: str | Iterable[str] | None = None,
        chart_of_account: int | Iterable[int] | None = None,
        is_posting_account: bool | None = None,
        status: str | None = None,
        blacklist: int | Iterable[int] | None = None,
    ) -> Paginator[GLAccount]:
        """GET /accounts (paged). Collections are sent comma-separated, as the spec asks."""
        return self._paged(
            "/accounts",
            GLAccount,
            {
                "name": name,
                "account_number": account_number,
                "account_number_or_name": account_number_or_name,
                "type": type,
                "designation": designation,
                "designation_category": designation_category,
                "chart_of_account": chart_of_account,
                "is_posting_account": is_posting_account,
                "status": status,
                "blacklist": blacklist,
            },
        )

    def get_gl_account(self, account_id: int) -> GLAccount:
        """GET /accounts/{id}."""
        return self._one("GET", f"/accounts/{_id(account_id)}", GLAccount)

    def list_account_designations(
        self,
        *,
        designation: str | None = None,
        category: str | None = None,
        type: str | None = None,
    ) -> list[AccountDesignation]:
        """GET /accounts/designations (not paged in the spec)."""
        answer = self._call(
            "GET",
            "/accounts/designations",
            params={"designation": designation, "category": category, "type": type},
        )
        return self._parse_list(answer, "GET /accounts/designations", AccountDesignation)

    def list_account_categories(
        self,
        *,
        name: str | None = None,
        type: str | Iterable[str] | None = None,
        status: str | None = None,
        blacklist: int | Iterable[int] | None = None,
    ) -> Paginator[AccountCategory]:
        """GET /account-categories (paged)."""
        return self._paged(
            "/account-categories",
            AccountCategory,
            {"name": name, "type": type, "status": status, "blacklist": blacklist},
        )

    def list_charts_of_accounts(
        self,
        *,
        ledger_id: int | None = None,
        id: int | None = None,
        name: str | None = None,
        status: str | Iterable[str] | None = None,
        account_category_id: int | None = None,
        account_id: int | None = None,
        get_accounts: bool = False,
        get_account_categories: bool = False,
        blacklist: int | Iterable[int] | None = None,
    ) -> Paginator[ChartOfAccounts]:
        """GET /chart-of-accounts (paged); accounts/categories only when asked for."""
        return self._paged(
            "/chart-of-accounts",
            ChartOfAccounts,
            {
                "ledger_id": ledger_id,
                "id": id,
                "name": name,
                "status": status,
                "account_category_id": account_category_id,
                "account_id": account_id,
                "get_accounts": get_accounts,
                "get_account_categories": get_account_categories,
                "blacklist": blacklist,
            },
        )

    def get_chart_of_accounts(
        self,
        chart_of_accounts_id: int,
        *,
        with_accounts: bool = True,
        with_categories: bool = True,
    ) -> ChartOfAccounts:
        """One chart of accounts with its accounts and categories (the spec has no GET by id)."""
        charts = self.list_charts_of_accounts(
            id=chart_of_accounts_id,
            get_accounts=with_accounts,
            get_account_categories=with_categories,
        )
        return self._single(charts, f"chart of accounts {chart_of_accounts_id}")

    def get_ledger_chart_of_accounts(
        self, ledger_id: int, *, with_accounts: bool = True, with_categories: bool = True
    ) -> ChartOfAccounts:
        """The chart of accounts a ledger uses, with its accounts and categories."""
        charts = self.list_charts_of_accounts(
            ledger_id=ledger_id,
            get_accounts=with_accounts,
            get_account_categories=with_categories,
        )
        return self._single(charts, f"the chart of accounts of ledger {ledger_id}")

    # --- Draft accounting transactions -------------------------------------------------------

    def list_draft_transactions(
        self,
        ledger_id: int,
        *,
        billing_account_num: str | None = None,
        transaction_date_from: DateLike | None = None,
        transaction_date_to: DateLike | None = None,
        source_transaction_reference: str | None = None,
        source_batch_reference: str | None = None,
    ) -> Paginator[DraftAccountingTransaction]:
        """GET /ledgers/{ledger_id}/draft-accounting-transactions (paged)."""
        return self._paged(
            f"/ledgers/{_id(ledger_id)}/draft-accounting-transactions",
            DraftAccountingTransaction,
            {
                "billing_account_num": billing_account_num,
                "transaction_date_from": transaction_date_from,
                "transaction_date_to": transaction_date_to,
                "source_transaction_reference": source_transaction_reference,
                "source_batch_reference": source_batch_reference,
            },
        )

    def create_draft_transaction(
        self,
        ledger_id: int,
        *,
        entries: Sequence[EntryInput],
        source_transaction_reference: str | None = None,
        source_batch_reference: str | None = None,
    ) -> DraftAccountingTransaction:
        """POST /ledgers/{ledger_id}/draft-accounting-transactions.

        Entries name their account by `gl_account_id` (the spec's body). The spec's body holds
        only `entries`; the references are sent when given (drafts that must be found by
        reference later are better created in bulk with auto_post=False). Not retried after a
        timeout (outcome_unknown): a second create would be a second draft.
        """
        body: dict[str, Any] = {"entries": [e.to_json(account_by="id") for e in entries]}
        if source_transaction_reference is not None:
            body["source_transaction_reference"] = source_transaction_reference
        if source_batch_reference is not None:
            body["source_batch_reference"] = source_batch_reference
        return self._one(
            "POST",
            f"/ledgers/{_id(ledger_id)}/draft-accounting-transactions",
            DraftAccountingTransaction,
            body=body,
            idempotent=False,
        )

    def get_draft_transaction(
        self, ledger_id: int, transaction_id: int
    ) -> DraftAccountingTransaction:
        """GET /ledgers/{ledger_id}/draft-accounting-transactions/{id}."""
        return self._one("GET", _draft_path(ledger_id, transaction_id), DraftAccountingTransaction)

    def update_draft_transaction(
        self, ledger_id: int, transaction_id: int, *, entries: Sequence[EntryInput]
    ) -> DraftAccountingTransaction:
        """PUT .../draft-accounting-transactions/{id}: replaces the entries. A posted
        transaction cannot be changed (ConflictError)."""
        body = {"entries": [e.to_json(account_by="id") for e in entries]}
        return self._one(
            "PUT", _draft_path(ledger_id, transaction_id), DraftAccountingTransaction, body=body
        )

    def delete_draft_transaction(self, ledger_id: int, transaction_id: int) -> None:
        """DELETE .../draft-accounting-transactions/{id}. A posted one cannot be deleted."""
        self._call("DELETE", _draft_path(ledger_id, transaction_id))

    def post_draft_transaction(self, ledger_id: int, transaction_id: int) -> AccountingTransaction:
        """POST .../draft-accounting-transactions/{id}/post: the posted transaction."""
        return self._one(
            "POST", _draft_path(ledger_id, transaction_id) + "/post", AccountingTransaction
        )

    # --- Manual accounting transactions in bulk -----------------------------------------------

    def create_transactions_bulk(
        self,
        ledger_id: int,
        transactions: Sequence[TransactionInput],
        *,
        auto_post: bool,
    ) -> BulkOutcome:
        """POST /ledgers/{ledger_id}/accounting-transactions/bulk?auto_post=...

        auto_post=True posts each valid transaction; False creates drafts. Returns one result
        per input, in input order, each tied to its input (position and
        source_transaction_reference): some may succeed while others fail; a per-transaction
        failure is a result, never an exception. Never retried after a timeout: the outcome is
        then unknown (GotransverseTimeoutError.outcome_unknown) and the caller must look the
        references up before sending again.
        """
        if isinstance(auto_post, str) or not isinstance(auto_post, bool):
            raise TypeError("auto_post must be True or False")
        transactions = list(transactions)
        endpoint = f"POST /ledgers/{ledger_id}/accounting-transactions/bulk"
        if not transactions:
            return BulkOutcome(results=())
        answer = self._call(
            "POST",
            f"/ledgers/{_id(ledger_id)}/accounting-transactions/bulk",
            params={"auto_post": auto_post},
            body=[t.to_json() for t in transactions],
            idempotent=False,
        )
        requested = [t.source_transaction_reference for t in transactions]
        return _match_bulk(answer.body, requested, endpoint=endpoint, match_on_reference=True)

    def post_drafts_bulk(
        self, ledger_id: int, ids: Sequence[int | str], *, id_type: IdType
    ) -> BulkOutcome:
        """POST /ledgers/{ledger_id}/accounting-transactions/bulk/post?id_type=...

        ids are draft ids (id_type TRANSACTION_ID) or source transaction references
        (SOURCE_TRANSACTION_REFERENCE). One result per id sent, in order.
        """
        ids = _bulk_ids(ids, id_type)
        endpoint = f"POST /ledgers/{ledger_id}/accounting-transactions/bulk/post"
        if not ids:
            return BulkOutcome(results=())
        answer = self._call(
            "POST",
            f"/ledgers/{_id(ledger_id)}/accounting-transactions/bulk/post",
            params={"id_type": id_type},
            body=ids,
        )
        return _match_bulk(
            answer.body,
            ids,
            endpoint=endpoint,
            match_on_reference=id_type == "SOURCE_TRANSACTION_REFERENCE",
            match_on_id=id_type == "TRANSACTION_ID",
        )

    def delete_drafts_bulk(
        self, ledger_id: int, ids: Sequence[int | str], *, id_type: IdType
    ) -> None:
        """DELETE /ledgers/{ledger_id}/accounting-transactions/bulk?id_type=... (drafts only)."""
        ids = _bulk_ids(ids, id_type)
        if not ids:
            return
        self._call(
            "DELETE",
            f"/ledgers/{_id(ledger_id)}/accounting-transactions/bulk",
            params={"id_type": id_type},
            body=ids,
        )

    # --- Accounting transactions, entries and balance ----------------------------------------

    def list_transactions(
        self,
        ledger_id: int,
        *,
        transaction_date_from: DateLike | None = None,
        transaction_date_to: DateLike | None = None,
        posted_on_from: DateLike | None = None,
        posted_on_to: DateLike | None = None,
        accounting_period_from: DateLike | None = None,
        accounting_period_to: DateLike | None = None,
        billing_account_number: str | None = None,
        billing_account_category_name: str | None = None,
        gl_account_number: str | None = None,
        transaction_type: str | Iterable[str] | None = None,
        charge_info_id: int | None = None,
    ) -> Paginator[AccountingTransaction]:
        """GET /ledgers/{ledger_id}/accounting-transactions (paged, posted transactions).

        The spec offers no source-reference filter here: use find_transactions_by_reference.
        """
        return self._paged(
            f"/ledgers/{_id(ledger_id)}/accounting-transactions",
            AccountingTransaction,
            {
                "transaction_date_from": transaction_date_from,
                "transaction_date_to": transaction_date_to,
                "posted_on_from": posted_on_from,
                "posted_on_to": posted_on_to,
                "accounting_period_from": accounting_period_from,
                "accounting_period_to": accounting_period_to,
                "billing_account_number": billing_account_number,
                "billing_account_category_name": billing_account_category_name,
                "gl_account_number": gl_account_number,
                "transaction_type": transaction_type,
                "charge_info_id": charge_info_id,
            },
        )

    def get_transaction(self, ledger_id: int, transaction_id: int) -> AccountingTransaction:
        """GET /ledgers/{ledger_id}/accounting-transactions/{id}."""
        return self._one(
            "GET",
            f"/ledgers/{_id(ledger_id)}/accounting-transactions/{_id(transaction_id)}",
            AccountingTransaction,
        )

    def list_accounting_entries(
        self,
        ledger_id: int,
        *,
        max_records: int | None = None,
        transaction_date_from: DateLike | None = None,
        transaction_date_to: DateLike | None = None,
        posted_on_from: DateLike | None = None,
        posted_on_to: DateLike | None = None,
        billing_account_number: str | None = None,
        billing_account_category_name: str | None = None,
        gl_account_number: str | None = None,
        transaction_type: str | Iterable[str] | None = None,
        charge_info_id: int | None = None,
        transaction_id: int | None = None,
        invoice_number: str | None = None,
        target_batch_key: str | None = None,
        source_batch_reference: str | None = None,
        source_transaction_reference: str | None = None,
    ) -> Paginator[AccountingEntry]:
        """GET /ledgers/{ledger_id}/accounting-entries (paged, posted entries)."""
        return self._paged(
            f"/ledgers/{_id(ledger_id)}/accounting-entries",
            AccountingEntry,
            {
                "max_records": max_records,
                "transaction_date_from": transaction_date_from,
                "transaction_date_to": transaction_date_to,
                "posted_on_from": posted_on_from,
                "posted_on_to": posted_on_to,
                "billing_account_number": billing_account_number,
                "billing_account_category_name": billing_account_category_name,
                "gl_account_number": gl_account_number,
                "transaction_type": transaction_type,
                "charge_info_id": charge_info_id,
                "transaction_id": transaction_id,
                "invoice_number": invoice_number,
                "target_batch_key": target_batch_key,
                "source_batch_reference": source_batch_reference,
                "source_transaction_reference": source_transaction_reference,
            },
        )

    def find_transactions_by_reference(
        self, ledger_id: int, source_transaction_reference: str
    ) -> list[AccountingTransaction]:
        """Every POSTED transaction carrying this source reference (there may be several: the
        ledger accepts duplicates). Found through the entries' filter, then read one by one."""
        if not source_transaction_reference:
            raise ValueError("source_transaction_reference is required")
        transaction_ids: list[int] = []
        entries = self.list_accounting_entries(
            ledger_id, source_transaction_reference=source_transaction_reference
        )
        for entry in entries:
            if entry.transaction_id is None or not str(entry.transaction_id).isdigit():
                raise UnexpectedResponseError(
                    f"entry {entry.id} of reference {source_transaction_reference!r} has no "
                    f"usable transaction_id ({entry.transaction_id!r})",
                    endpoint=f"GET /ledgers/{ledger_id}/accounting-entries",
                )
            tid = int(entry.transaction_id)
            if tid not in transaction_ids:
                transaction_ids.append(tid)
        _refuse_unreadable(
            entries, source_transaction_reference, f"GET /ledgers/{ledger_id}/accounting-entries"
        )
        return [self.get_transaction(ledger_id, tid) for tid in transaction_ids]

    def find_drafts_by_reference(
        self, ledger_id: int, source_transaction_reference: str
    ) -> list[DraftAccountingTransaction]:
        """Every DRAFT carrying this source reference."""
        if not source_transaction_reference:
            raise ValueError("source_transaction_reference is required")
        drafts = self.list_draft_transactions(
            ledger_id, source_transaction_reference=source_transaction_reference
        )
        found = drafts.all()
        _refuse_unreadable(
            drafts,
            source_transaction_reference,
            f"GET /ledgers/{ledger_id}/draft-accounting-transactions",
        )
        return found

    def get_balance(
        self,
        ledger_id: int,
        *,
        amount_type: Literal["DEBIT", "CREDIT"] | None = None,
        start_date: DateLike | None = None,
        end_date: DateLike | None = None,
        gl_account_number: str | None = None,
        billing_account_category_name: str | None = None,
        billing_account_number: str | None = None,
        currency: str | None = None,
        gl_account_category_name: str | None = None,
        gl_account_category_parent_name: str | None = None,
        account_designation_type: str | None = None,
        include_parent_accounts: Literal["EXCLUDE", "INCLUDE", "ONLY"] | None = None,
    ) -> list[Balance]:
        """GET /ledgers/{ledger_id}/balance (not paged in the spec)."""
        path = f"/ledgers/{_id(ledger_id)}/balance"
        answer = self._call(
            "GET",
            path,
            params={
                "amount_type": amount_type,
                "start_date": start_date,
                "end_date": end_date,
                "gl_account_number": gl_account_number,
                "billing_account_category_name": billing_account_category_name,
                "billing_account_number": billing_account_number,
                "currency": currency,
                "gl_account_category_name": gl_account_category_name,
                "gl_account_category_parent_name": gl_account_category_parent_name,
                "account_designation_type": account_designation_type,
                "include_parent_accounts": include_parent_accounts,
            },
        )
        return self._parse_list(answer, f"GET {path}", Balance)

    # --- AR Ledger runs --------------------------------------------------------------------------

    def list_gl_runs(self, *, status: str | None = None) -> Paginator[GLRun]:
        """GET /glruns (paged). status: NOT_STARTED, RUNNING, ERROR or COMPLETE."""
        return self._paged("/glruns", GLRun, {"status": status})

    def list_ledger_gl_runs(self, ledger_id: int) -> list[GLRun]:
        """GET /ledgers/{ledger_id}/glruns (not paged in the spec)."""
        path = f"/ledgers/{_id(ledger_id)}/glruns"
        return self._parse_list(self._call("GET", path), f"GET {path}", GLRun)

    def get_gl_run(self, run_id: int) -> GLRun:
        """GET /glruns/{id}."""
        return self._one("GET", f"/glruns/{_id(run_id)}", GLRun)

    def create_gl_run(
        self,
        *,
        ledger_id: int,
        gl_run_mode_id: int | None = None,
        run_to_date: DateLike | None = None,
    ) -> GLRun:
        """POST /glruns: creates an AR Ledger run and runs it. Not retried after a timeout."""
        body: dict[str, Any] = {"ledger_id": _id(ledger_id)}
        if gl_run_mode_id is not None:
            body["gl_run_mode_id"] = gl_run_mode_id
        if run_to_date is not None:
            body["run_to_date"] = _body_datetime(run_to_date)
        return self._one("POST", "/glruns", GLRun, body=body, idempotent=False)

    def delete_gl_run(self, run_id: int) -> None:
        """DELETE /glruns/{id}: the run and all its processing results."""
        self._call("DELETE", f"/glruns/{_id(run_id)}")

    def list_gl_run_errors(self, run_id: int) -> Paginator[RunError]:
        """GET /glruns/{id}/errors (paged)."""
        return self._paged(f"/glruns/{_id(run_id)}/errors", RunError, {})

    # --- Collectors ----------------------------------------------------------------------------

    def list_collectors(
        self, *, group: str | None = None, category: str | None = None
    ) -> Paginator[Collector]:
        """GET /collectors (paged)."""
        return self._paged("/collectors", Collector, {"group": group, "category": category})

    def list_collector_runs(self) -> Paginator[CollectorRun]:
        """GET /collector-runs (paged)."""
        return self._paged("/collector-runs", CollectorRun, {})

    def get_collector_run(self, run_id: int) -> CollectorRun:
        """GET /collector-runs/{id}."""
        return self._one("GET", f"/collector-runs/{_id(run_id)}", CollectorRun)

    def create_collector_run(
        self,
        *,
        type: str,
        collector_operations: Sequence[str] = (),
        data_fetch_from_date: DateLike | None = None,
        data_fetch_to_date: DateLike | None = None,
        overlap_fetch_time: int | None = None,
    ) -> CollectorRun:
        """POST /collector-runs: creates collector runs and runs them (not retried on timeout)."""
        body: dict[str, Any] = {"type": type, "collector_operations": list(collector_operations)}
        if data_fetch_from_date is not None:
            body["data_fetch_from_date"] = _body_datetime(data_fetch_from_date)
        if data_fetch_to_date is not None:
            body["data_fetch_to_date"] = _body_datetime(data_fetch_to_date)
        if overlap_fetch_time is not None:
            body["overlap_fetch_time"] = overlap_fetch_time
        return self._one("POST", "/collector-runs", CollectorRun, body=body, idempotent=False)

    def list_collector_run_errors(self, run_id: int) -> Paginator[RunError]:
        """GET /collector-runs/{id}/errors (paged)."""
        return self._paged(f"/collector-runs/{_id(run_id)}/errors", RunError, {})

    # --- transport -------------------------------------------------------------------------

    def _paged(self, path: str, record: type[R], params: Mapping[str, Any]) -> Paginator[R]:
        endpoint = f"GET {path}"

        def fetch(page_params: Mapping[str, Any]) -> Page:
            answer = self._call("GET", path, params=page_params)
            if not isinstance(answer.body, list):
                raise UnexpectedResponseError(
                    f"expected a JSON list, got {type(answer.body).__name__}",
                    status=answer.status,
                    endpoint=endpoint,
                )
            return Page(
                items=answer.body,
                total_count=_int_header(answer.headers, "X-Total-Count"),
                elements_count=_int_header(answer.headers, "X-Elements-Count"),
                total_pages=_int_header(answer.headers, "X-Total-Pages"),
            )

        return Paginator(fetch, record.from_json, params=params, page_size=self.page_size)

    def _one(
        self,
        method: str,
        path: str,
        record: type[R],
        *,
        body: Any = _NO_BODY,
        idempotent: bool = True,
    ) -> R:
        answer = self._call(method, path, body=body, idempotent=idempotent)
        try:
            return record.from_json(answer.body)
        except RecordError as exc:
            raise UnexpectedResponseError(
                f"could not read the answer: {exc}",
                status=answer.status,
                endpoint=f"{method} {path}",
            ) from exc

    def _single(self, records: Paginator[R], what: str) -> R:
        found = records.all()
        if records.errors:
            raise UnexpectedResponseError(
                f"could not read {what}: {records.errors[0]}", endpoint="GET /chart-of-accounts"
            )
        if not found:
            raise NotFoundError(
                f"{what} was not found", code="NOT_FOUND", endpoint="GET /chart-of-accounts"
            )
        return found[0]

    @staticmethod
    def _parse_list(answer: _Answer, endpoint: str, record: type[R]) -> list[R]:
        if not isinstance(answer.body, list):
            raise UnexpectedResponseError(
                f"expected a JSON list, got {type(answer.body).__name__}",
                status=answer.status,
                endpoint=endpoint,
            )
        try:
            return [record.from_json(item) for item in answer.body]
        except RecordError as exc:
            raise UnexpectedResponseError(
                f"could not read the answer: {exc}", status=answer.status, endpoint=endpoint
            ) from exc

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = _NO_BODY,
        idempotent: bool = True,
    ) -> _Answer:
        """One logical call: attempts with backoff until success or a non-retryable error."""
        retrying = tenacity.Retrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait_exponential_jitter(
                multiplier=self._backoff_initial,
                max=self._backoff_max,
                jitter=self._backoff_initial,
            ),
            retry=retry_if_exception(
                lambda exc: isinstance(exc, GotransverseError) and exc.retryable
            ),
            sleep=self._sleep,
            before_sleep=self._note_retry,
            reraise=True,
        )
        query = _query(params or {})
        return retrying(self._attempt, method, path, query, body, idempotent)

    def _note_retry(self, state: tenacity.RetryCallState) -> None:
        self.stats.retries += 1
        exc = state.outcome.exception() if state.outcome is not None else None
        logger.warning(
            "gotransverse.retry",
            extra={
                "endpoint": getattr(exc, "endpoint", None),
                "status": getattr(exc, "status", None),
                "attempt": state.attempt_number,
                "wait_seconds": round(state.upcoming_sleep, 3),
            },
        )

    def _attempt(
        self, method: str, path: str, query: dict[str, str], body: Any, idempotent: bool
    ) -> _Answer:
        endpoint = f"{method} {path}"
        headers = {"X-Api-Key": self._api_key}
        data: bytes | None = None
        if body is not _NO_BODY:
            data = wire.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        self.stats.requests += 1
        try:
            response = self._session.request(
                method,
                self.base_url + path,
                params=query,
                data=data,
                headers=headers,
                timeout=self.timeout,
                # requests keeps custom headers (X-Api-Key) across a redirect to another host.
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            reached = not isinstance(exc, requests.ConnectTimeout)
            unsafe = reached and not idempotent
            raise GotransverseTimeoutError(
                f"no answer within {self.timeout}s"
                + (
                    "; the ledger may have applied it: look it up before retrying" if unsafe else ""
                ),
                code="TIMEOUT",
                endpoint=endpoint,
                retryable=not unsafe,
                outcome_unknown=unsafe,
            ) from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            # A connection that broke while the answer was streaming also counts as "reached".
            reached = not (isinstance(exc, requests.ConnectionError) and _never_reached_server(exc))
            unsafe = not idempotent and reached
            raise GotransverseConnectionError(
                f"connection failed ({type(exc).__name__})"
                + (
                    "; the ledger may have applied it: look it up before retrying" if unsafe else ""
                ),
                code="CONNECTION_ERROR",
                endpoint=endpoint,
                retryable=not unsafe,
                outcome_unknown=unsafe,
            ) from None

        status = response.status_code
        if status >= 400:
            error_body = _safe_json(response.content)
            error = error_for_status(status, error_body, endpoint=endpoint, reason=response.reason)
            if error.retryable and not idempotent:
                # A 503 on a create: nothing in the spec says the ledger applied none of it.
                # Never resend blindly; the caller looks the references up first.
                error.retryable = False
                error.outcome_unknown = True
                error.message += "; the ledger may have applied it: look it up before retrying"
            raise error
        if not 200 <= status < 300:
            raise UnexpectedResponseError(
                f"unexpected HTTP {status} (redirects are not followed)",
                status=status,
                endpoint=endpoint,
            )
        if not response.content.strip():
            return _Answer(status=status, body=None, headers=response.headers)
        try:
            parsed = wire.loads(response.content)
        except ValueError:
            raise UnexpectedResponseError(
                "the answer is not JSON", status=status, endpoint=endpoint
            ) from None
        logger.debug("gotransverse.call", extra={"endpoint": endpoint, "status": status})
        return _Answer(status=status, body=parsed, headers=response.headers)


# --- helpers -------------------------------------------------------------------------------------


def _id(value: Any) -> int:
    """A path id must be an integer: never let text reach the URL path."""
    if isinstance(value, bool):
        raise TypeError("an id must be an integer, got a bool")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise TypeError(f"an id must be an integer, got {value!r}")


def _period_path(ledger_id: int, year_id: int, period_id: int) -> str:
    return (
        f"/ledgers/{_id(ledger_id)}/calendar/years/{_id(year_id)}"
        f"/accounting-periods/{_id(period_id)}"
    )


def _draft_path(ledger_id: int, transaction_id: int) -> str:
    return f"/ledgers/{_id(ledger_id)}/draft-accounting-transactions/{_id(transaction_id)}"


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return _wire_datetime(value) or ""
    if isinstance(value, date):
        # A date filter in the spec's own date form ("2015-12-12Z"): a whole day, UTC. A bare
        # "2015-12-12" is not among the forms the spec lists.
        return value.isoformat() + "Z"
    if isinstance(value, str):
        return value
    if isinstance(value, Iterable):
        return ",".join(_query_value(v) for v in value)
    return str(value)


def _body_datetime(value: DateLike) -> str:
    """A body date-time: text is sent as given, a date or datetime as RFC 3339 in UTC."""
    if isinstance(value, str):
        return value
    return _wire_datetime(value) or ""


def _query(params: Mapping[str, Any]) -> dict[str, str]:
    """Query parameters as the spec takes them: None dropped, collections comma-separated."""
    return {key: _query_value(value) for key, value in params.items() if value is not None}


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _safe_json(content: bytes) -> Any:
    if not content.strip():
        return None
    try:
        return wire.loads(content)
    except ValueError:
        return None


def _never_reached_server(exc: requests.ConnectionError) -> bool:
    """True when the request surely never reached the ledger (connection refused / no route)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name = type(current).__name__
        if name in ("NewConnectionError", "NameResolutionError", "ConnectTimeoutError"):
            return True
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            current = reason
            continue
        args = getattr(current, "args", ())
        nested = next((a for a in args if isinstance(a, BaseException)), None)
        current = nested or current.__cause__ or current.__context__
    return False


def _refuse_unreadable(records: Paginator[Any], reference: str, endpoint: str) -> None:
    """A lookup by reference decides whether a transaction is sent (again): a record of that
    reference that could not be read must not count as "not there", or the journal would be
    booked a second time. Raise instead, so the caller retries the lookup later."""
    if records.errors:
        raise UnexpectedResponseError(
            f"{len(records.errors)} record(s) of reference {reference!r} could not be read "
            f"({records.errors[0]}); cannot tell whether it is already in the ledger",
            endpoint=endpoint,
            outcome_unknown=True,
        )


def _bulk_ids(ids: Sequence[int | str], id_type: str) -> list[str]:
    if id_type not in ID_TYPES:
        raise ValueError(f"id_type must be one of {', '.join(ID_TYPES)}, got {id_type!r}")
    if isinstance(ids, str | bytes):
        raise TypeError("ids must be a list of ids or references, not one string")
    out = []
    for value in ids:
        if id_type == "TRANSACTION_ID":
            out.append(str(_id(value)))
        else:
            if not isinstance(value, str) or not value:
                raise ValueError(f"a source transaction reference must be text, got {value!r}")
            out.append(value)
    return out


def _bulk_result(raw: Any, *, index: int | None, requested: str | None) -> BulkTransactionResult:
    """One answer of a bulk call, read leniently: a malformed answer is a failed result."""
    if not isinstance(raw, Mapping):
        return BulkTransactionResult(
            index=index,
            requested=requested,
            answered=True,
            id=None,
            source_transaction_reference=None,
            source_batch_reference=None,
            target_batch_key=None,
            code=None,
            error_message=f"unreadable result from the ledger: {raw!r}",
            entries=(),
            raw=None,
        )
    reader = _Reader("BulkTransactionResult", raw)
    problems: list[str] = []

    def safe(read: Callable[[], Any]) -> Any:
        try:
            return read()
        except RecordError as exc:
            problems.append(str(exc))
            return None

    entries = safe(lambda: reader.nested("entries", AccountingEntry)) or ()
    error_message = safe(lambda: reader.str("error_message")) or None
    if problems:
        detail = "; ".join(problems)
        error_message = f"{error_message}; {detail}" if error_message else detail
    result_id = safe(lambda: reader.int("id"))
    if problems and result_id is not None:
        # The ledger booked something we cannot fully read: keep the id, flag it as an error.
        error_message = f"result for id {result_id} could not be read: {error_message}"
    return BulkTransactionResult(
        index=index,
        requested=requested,
        answered=True,
        id=result_id,
        source_transaction_reference=safe(lambda: reader.str("source_transaction_reference")),
        source_batch_reference=safe(lambda: reader.str("source_batch_reference")),
        target_batch_key=safe(lambda: reader.str("target_batch_key")),
        code=safe(lambda: reader.int("code")),
        error_message=error_message,
        entries=entries,
        raw=raw,
    )


def _unanswered(index: int, requested: str | None) -> BulkTransactionResult:
    return BulkTransactionResult(
        index=index,
        requested=requested,
        answered=False,
        id=None,
        source_transaction_reference=None,
        source_batch_reference=None,
        target_batch_key=None,
        code=None,
        error_message="the ledger returned no result for this transaction; outcome unknown",
        entries=(),
    )


def _match_bulk(
    body: Any,
    requested: Sequence[str | None],
    *,
    endpoint: str,
    match_on_reference: bool,
    match_on_id: bool = False,
) -> BulkOutcome:
    """Tie each answer of a bulk call to the input it answers.

    By position when the answer has one item per input and no item contradicts its position's
    reference/id; otherwise by reference (or id) where that is unique on both sides. Inputs left
    without an answer are `answered=False`; answers left over are `unmatched`.
    """
    if not isinstance(body, list):
        # A 2xx came back, so the ledger may have booked some of it: never "nothing happened".
        raise UnexpectedResponseError(
            f"expected one result per transaction (a JSON list), got {type(body).__name__}",
            endpoint=endpoint,
            outcome_unknown=True,
        )

    def key_of(raw: Any) -> str | None:
        if not isinstance(raw, Mapping):
            return None
        if match_on_id:
            value = raw.get("id")
        elif match_on_reference:
            value = raw.get("source_transaction_reference")
        else:
            return None
        return None if value is None else str(value)

    positional = len(body) == len(requested) and all(
        key_of(raw) is None or requested[i] is None or key_of(raw) == requested[i]
        for i, raw in enumerate(body)
    )
    if positional:
        return BulkOutcome(
            results=tuple(
                _bulk_result(raw, index=i, requested=requested[i]) for i, raw in enumerate(body)
            )
        )

    logger.warning(
        "gotransverse.bulk_unaligned",
        extra={"endpoint": endpoint, "sent": len(requested), "answered": len(body)},
    )
    results: list[BulkTransactionResult | None] = [None] * len(requested)
    used: set[int] = set()
    request_counts: dict[str, int] = {}
    for ref in requested:
        if ref is not None:
            request_counts[ref] = request_counts.get(ref, 0) + 1
    answer_counts: dict[str, int] = {}
    for raw in body:
        key = key_of(raw)
        if key is not None:
            answer_counts[key] = answer_counts.get(key, 0) + 1
    for answer_index, raw in enumerate(body):
        key = key_of(raw)
        if key is None or request_counts.get(key) != 1 or answer_counts.get(key) != 1:
            continue
        input_index = list(requested).index(key)
        results[input_index] = _bulk_result(raw, index=input_index, requested=key)
        used.add(answer_index)
    unmatched = tuple(
        _bulk_result(raw, index=None, requested=None)
        for answer_index, raw in enumerate(body)
        if answer_index not in used
    )
    return BulkOutcome(
        results=tuple(
            result if result is not None else _unanswered(i, requested[i])
            for i, result in enumerate(results)
        ),
        unmatched=unmatched,
    )
