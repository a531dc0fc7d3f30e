"""The ATLAS ETRM API client: token, pacing, retries, batching and typed records.

One instance per worker (it holds a token and an HTTP session). Every call is
`POST {base}/api/...` with a JSON body and answers the envelope
`{"success": true, "recordCount": N, "data": [...]}` (see ../shared/CONTRACT.md).

How a call goes:
1. the shared pacer grants a slot (100 requests a minute for the whole service account);
2. a cached bearer token is used, renewed `token_renew_margin_seconds` before it runs out;
   a 401 renews it once and resends once, a second 401 is AtlasAuthenticationError;
3. failures are mapped to the typed errors of integration.atlas.errors; 429 is retried after
   max(`rate_limit_wait_seconds`, Retry-After); 5xx, timeouts and broken connections after a
   capped exponential backoff with jitter (tenacity), at most `max_retries` times; any other 4xx
   is never retried;
4. records are parsed one by one: a bad record becomes an entry of `ReadResult.errors`, the rest
   of the answer is still returned.

Id lists are sent in chunks of `batch_size` and writes in arrays of at most `batch_size`
records, so API calls grow with the number of batches, not of records.

Secrets: the password is sent only in the token request body and the token only in the
Authorization header of each request; neither is logged, put in an exception, or set on the
session (a session passed in stays clean). Nothing here turns on urllib3/http.client debug
output, which would print headers.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
import tenacity

from integration import wire
from integration.atlas.errors import (
    AtlasAuthenticationError,
    AtlasBadRequestError,
    AtlasConnectionError,
    AtlasError,
    AtlasPacingError,
    AtlasProtocolError,
    AtlasRateLimitError,
    AtlasServerError,
    AtlasTimeoutError,
)
from integration.atlas.ratelimit import Pacer, PacingTimeout
from integration.atlas.records import (
    AtlasRecord,
    Counterparty,
    CustomFieldDefinition,
    CustomFieldType,
    Invoice,
    Order,
    OrderItem,
    Payment,
    ReadResult,
    parse_records,
)
from integration.http import TimeoutSession

logger = logging.getLogger(__name__)

R = TypeVar("R", bound=AtlasRecord)

TOKEN_PATH = "/api/token"  # noqa: S105 - a URL path, not a secret
# ATLAS tokens live one hour (the guide); used when the token answer does not say.
DEFAULT_TOKEN_LIFETIME_SECONDS = 3600
# Backoff for 5xx, timeouts and connection errors: 1 s, 2 s, 4 s ... capped, plus up to 1 s of
# jitter so that workers failing together do not retry together.
BACKOFF_INITIAL_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
BACKOFF_JITTER_SECONDS = 1.0
# How much of a non-JSON error body to quote in an error message.
ERROR_BODY_EXCERPT = 200

# Statuses ATLAS (or a proxy in front of it) uses for "rejected, do not send this again".
_AUTH_STATUSES = frozenset({401, 403})


@dataclass
class AtlasClientStats:
    """Counters of one client's life, copied onto a SyncRun by the services.

    requests: HTTP requests sent, token requests and retries included.
    rate_limited: 429 answers received.
    retries: requests sent again after a retryable failure (429, 5xx, timeout, connection).
    token_renewals: tokens obtained (the first one included).
    """

    requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    token_renewals: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class AtlasClient:
    """Typed access to the ATLAS ETRM API. See the module docstring for the behaviour.

    Writes (`*/Post`) are upserts: a record with an `id` updates that record, one without (or
    with 0) creates. A batch of updates only is retried after a timeout, 5xx or broken
    connection without knowing whether ATLAS applied it: applying an update keyed by its id
    twice has the effect of applying it once. A batch holding a create is NOT resent after such
    a failure (ATLAS does not deduplicate by `externalId`, so a second send would create a
    second invoice or payment): the error is raised with `outcome_unknown=True` and the caller
    looks the record up by `externalId` before sending again. A 429, a 401 or a connection that
    never reached ATLAS applied nothing, so they are retried for creates too.

    Redirects are never followed: requests would resend the token request's body (the
    password) to whatever host a 307/308 names.
    """

    def __init__(
        self,
        *,
        base_url: str,
        username: str,
        password: str,
        batch_size: int = 500,
        limiter: Pacer | None = None,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        max_retries: int = 5,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        token_renew_margin_seconds: float = 300,
        rate_limit_wait_seconds: float = 60,
    ):
        parts = urlsplit(base_url or "")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("base_url must be an http(s) URL such as https://atlas.example.com")
        if parts.username or parts.password:
            raise ValueError("base_url must not carry credentials; pass username and password")
        if not username or not password:
            raise ValueError("username and password of the ATLAS service account are required")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError("batch_size must be a whole number of at least 1")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError("max_retries must be a whole number of 0 or more")
        if not timeout or timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        if token_renew_margin_seconds < 0:
            raise ValueError("token_renew_margin_seconds must be 0 or more")
        if rate_limit_wait_seconds < 0:
            raise ValueError("rate_limit_wait_seconds must be 0 or more")
        if limiter is not None and not callable(getattr(limiter, "acquire", None)):
            raise ValueError(
                "limiter must have an acquire() method (see integration.atlas.ratelimit)"
            )

        self.base_url = base_url.rstrip("/")
        self.batch_size = batch_size
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.token_renew_margin_seconds = float(token_renew_margin_seconds)
        self.rate_limit_wait_seconds = float(rate_limit_wait_seconds)
        self.stats = AtlasClientStats()
        self._username = username
        self._password = password
        self._limiter = limiter
        self._session = session if session is not None else TimeoutSession(timeout=self.timeout)
        self._sleep = sleep
        self._clock = clock
        self._token: str | None = None
        self._token_expires_at = 0.0
        self._token_lifetime = float(DEFAULT_TOKEN_LIFETIME_SECONDS)
        self._token_lock = threading.Lock()
        self._backoff = tenacity.wait_exponential_jitter(
            multiplier=BACKOFF_INITIAL_SECONDS,
            max=BACKOFF_MAX_SECONDS,
            jitter=BACKOFF_JITTER_SECONDS,
        )

    def __repr__(self) -> str:
        # Never the password or the token.
        return f"AtlasClient(base_url={self.base_url!r}, username={self._username!r})"

    # --- custom fields -------------------------------------------------------------------------

    def get_custom_field_types(self) -> ReadResult[CustomFieldType]:
        """All custom field types (`POST /api/CustomFields/GetTypes`, `{"data": []}`)."""
        return self._read_all(CustomFieldType, "/api/CustomFields/GetTypes")

    def get_counterparty_custom_fields(
        self, counterparty_type_ids: Sequence[int] = ()
    ) -> ReadResult[CustomFieldDefinition]:
        """Counterparty custom field definitions, for the given counterparty type ids or, when
        none are given, all of them (`POST /api/CustomFields/Counterparties/
        GetByCounterpartyTypeIds`)."""
        return self._read_ids(
            CustomFieldDefinition,
            "/api/CustomFields/Counterparties/GetByCounterpartyTypeIds",
            counterparty_type_ids,
            empty_means_all=True,
        )

    # --- counterparties ------------------------------------------------------------------------

    def get_counterparties(self, ids: Sequence[int] | None = None) -> ReadResult[Counterparty]:
        """Counterparties by id, or all of them when `ids` is None or empty."""
        return self._read_ids(Counterparty, "/api/Counterparty/GetByIds", ids, empty_means_all=True)

    def post_counterparties(self, records: Sequence[Mapping[str, Any]]) -> ReadResult[Counterparty]:
        """Upsert counterparties (`POST /api/Counterparty/Post`); returns the saved records.

        Keyed by the ATLAS counterparty `id` (write-back of `externalId`, GL account, IBAN), so a
        retried batch changes nothing the first attempt did not.
        """
        return self._write(Counterparty, "/api/Counterparty/Post", records)

    # --- orders --------------------------------------------------------------------------------

    def get_orders(self, ids: Sequence[int] | None = None) -> ReadResult[Order]:
        """Orders by id, or all of them when `ids` is None or empty."""
        return self._read_ids(Order, "/api/Order/GetByIds", ids, empty_means_all=True)

    def post_orders(self, records: Sequence[Mapping[str, Any]]) -> ReadResult[Order]:
        """Upsert orders (`POST /api/Order/Post`), e.g. the `erpCode` write-back.

        ATLAS requires `registrationDate`, `dueDate` and `totalAmount` in every record, even on
        update; keyed by the order `id`, so a retried batch is harmless.
        """
        return self._write(Order, "/api/Order/Post", records)

    # --- order items ---------------------------------------------------------------------------

    def get_order_items(self, ids: Sequence[int] | None = None) -> ReadResult[OrderItem]:
        """Order items by id, or all of them when `ids` is None or empty."""
        return self._read_ids(OrderItem, "/api/OrderItem/GetByIds", ids, empty_means_all=True)

    def get_order_items_by_order_ids(self, order_ids: Sequence[int]) -> ReadResult[OrderItem]:
        """The items of the given orders. No order ids: no call, an empty result."""
        return self._read_ids(OrderItem, "/api/OrderItem/GetByOrderIds", order_ids)

    # --- invoices ------------------------------------------------------------------------------

    def get_invoices(self, ids: Sequence[int] | None = None) -> ReadResult[Invoice]:
        """Invoices by id, or all of them when `ids` is None or empty."""
        return self._read_ids(Invoice, "/api/Invoice/GetByIds", ids, empty_means_all=True)

    def get_invoices_by_external_ids(self, external_ids: Sequence[str]) -> ReadResult[Invoice]:
        """Invoices by our ERP invoice reference (`externalId`). None given: no call."""
        return self._read_ids(Invoice, "/api/Invoice/GetByExternalIds", external_ids, kind=str)

    def get_invoices_by_order_id(self, order_id: int) -> ReadResult[Invoice]:
        """The invoices of one order (`{"data": <order id>}`, as the guide shows)."""
        _check_ids([order_id], int)
        return self._read(Invoice, "/api/Invoice/GetByOrderId", order_id)

    def post_invoices(self, records: Sequence[Mapping[str, Any]]) -> ReadResult[Invoice]:
        """Upsert invoices (`POST /api/Invoice/Post`), also to set `isPaid`.

        A create carries no `id`: callers look the invoice up by `externalId` first
        (get_invoices_by_external_ids) and send its `id` when it exists, so a retry after a
        timeout finds and updates the invoice instead of creating a second one.
        """
        return self._write(Invoice, "/api/Invoice/Post", records)

    # --- payments ------------------------------------------------------------------------------

    def get_payments_by_invoice_ids(self, invoice_ids: Sequence[int]) -> ReadResult[Payment]:
        """The payments of the given invoices. No invoice ids: no call, an empty result."""
        return self._read_ids(Payment, "/api/Payment/GetByInvoiceIds", invoice_ids)

    def get_payments_by_order_ids(self, order_ids: Sequence[int]) -> ReadResult[Payment]:
        """The payments of the given orders. No order ids: no call, an empty result."""
        return self._read_ids(Payment, "/api/Payment/GetByOrderIds", order_ids)

    def post_payments(self, records: Sequence[Mapping[str, Any]]) -> ReadResult[Payment]:
        """Upsert payments (`POST /api/Payment/Post`).

        Like invoices, callers look a payment up by `externalId` (get_payments_by_*) before
        creating it, so a retried create does not record the same payment twice.
        """
        return self._write(Payment, "/api/Payment/Post", records)

    # --- reads and writes ----------------------------------------------------------------------

    def _read_all(self, record_type: type[R], path: str) -> ReadResult[R]:
        return self._read(record_type, path, [])

    def _read_ids(
        self,
        record_type: type[R],
        path: str,
        ids: Sequence[Any] | None,
        *,
        empty_means_all: bool = False,
        kind: type = int,
    ) -> ReadResult[R]:
        if isinstance(ids, str | bytes):
            raise TypeError(f"{path}: pass a list of ids, not a single string")
        unique = list(dict.fromkeys(ids or ()))  # the same id twice would cost a slot for nothing
        _check_ids(unique, kind)
        if not unique:
            return self._read_all(record_type, path) if empty_means_all else ReadResult()
        result: ReadResult[R] = ReadResult()
        for chunk in _chunks(unique, self.batch_size):
            result.extend(self._read(record_type, path, chunk))
        return result

    def _read(self, record_type: type[R], path: str, data: Any) -> ReadResult[R]:
        records = self._call(path, {"data": data})
        return parse_records(record_type, records)

    def _write(
        self, record_type: type[R], path: str, records: Sequence[Mapping[str, Any]]
    ) -> ReadResult[R]:
        if isinstance(records, Mapping):
            raise TypeError(f"{path}: pass a list of records, not a single record")
        batch = [dict(record) for record in records]
        for record in batch:
            _refuse_floats(path, record)
        result: ReadResult[R] = ReadResult()
        for chunk in _chunks(batch, self.batch_size):
            creates = any(_is_create(record) for record in chunk)
            answer = self._call(path, {"data": chunk}, may_resend=not creates)
            result.extend(parse_records(record_type, answer))
        return result

    # --- transport -----------------------------------------------------------------------------

    def _call(self, path: str, body: Mapping[str, Any], *, may_resend: bool = True) -> list[Any]:
        """Send one logical request (with its retries) and return the envelope's `data` list.

        may_resend=False (a write that creates): only failures that surely applied nothing are
        retried; any other failure is raised with `outcome_unknown=True`.
        """
        payload = wire.dumps(body)
        retryable = _is_retryable if may_resend else _is_retryable_create
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(retryable),
            stop=tenacity.stop_after_attempt(self.max_retries + 1),
            wait=self._wait_before_retry,
            sleep=self._sleep,
            before_sleep=self._count_retry,
            reraise=True,
        )
        try:
            envelope = retrying(self._authorised_request, path, payload)
        except AtlasError as error:
            if not may_resend and error.retryable and not _applied_nothing(error):
                error.outcome_unknown = True
                error.message += (
                    "; ATLAS may have created the record(s): look them up by externalId "
                    "before sending again"
                )
            raise
        return _envelope_records(path, envelope)

    def _wait_before_retry(self, retry_state: tenacity.RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(error, AtlasRateLimitError):
            # ATLAS: back off at least 60 s after a 429; longer if Retry-After asks for it.
            return max(self.rate_limit_wait_seconds, error.retry_after_seconds or 0.0)
        return float(self._backoff(retry_state))

    def _count_retry(self, retry_state: tenacity.RetryCallState) -> None:
        self.stats.retries += 1
        error = retry_state.outcome.exception() if retry_state.outcome else None
        wait = retry_state.upcoming_sleep
        logger.warning(
            "ATLAS %s failed (%s, HTTP %s); retry %d in %.1fs",
            getattr(error, "endpoint", None),
            type(error).__name__,
            getattr(error, "status", None),
            retry_state.attempt_number,
            wait,
            extra={
                "endpoint": getattr(error, "endpoint", None),
                "status": getattr(error, "status", None),
                "error": type(error).__name__,
                "attempt": retry_state.attempt_number,
                "wait_seconds": round(wait, 3),
            },
        )

    def _authorised_request(self, path: str, payload: str) -> Any:
        """One attempt: with the current token, and once more with a fresh one after a 401."""
        token = self._valid_token()
        response = self._send(path, payload, token=token)
        if response.status_code == 401:
            logger.info(
                "ATLAS %s answered 401; renewing the token once", path, extra={"endpoint": path}
            )
            token = self._renew_token(stale=token)
            response = self._send(path, payload, token=token)
            if response.status_code == 401:
                raise AtlasAuthenticationError(
                    _error_message(response) or "token refused again right after renewal",
                    endpoint=path,
                    status=401,
                )
        return _checked_envelope(path, response, clock=self._clock)

    def _send(self, path: str, payload: str, *, token: str | None) -> requests.Response:
        """One HTTP request, paced; network failures mapped to typed errors."""
        self._pace(path)
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        self.stats.requests += 1
        started = time.monotonic()
        try:
            response = self._session.post(
                self.base_url + path,
                data=payload.encode(),
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            error: AtlasError = AtlasTimeoutError(
                f"no answer within {self.timeout:g}s ({type(exc).__name__})", endpoint=path
            )
            error.never_sent = isinstance(exc, requests.ConnectTimeout)  # type: ignore[attr-defined]
            raise error from None
        except requests.RequestException as exc:
            # from None: the chained exception would repeat the request details.
            error = AtlasConnectionError(_network_reason(exc), endpoint=path)
            error.never_sent = _never_reached_server(exc)  # type: ignore[attr-defined]
            raise error from None
        if response.status_code == 429:
            self.stats.rate_limited += 1
        logger.debug(
            "ATLAS %s answered HTTP %s",
            path,
            response.status_code,
            extra={
                "endpoint": path,
                "status": response.status_code,
                "elapsed_ms": round((time.monotonic() - started) * 1000),
            },
        )
        return response

    def _pace(self, path: str) -> None:
        if self._limiter is None:
            return
        try:
            self._limiter.acquire()
        except PacingTimeout as exc:
            raise AtlasPacingError(
                f"shared pacing limiter: {exc}",
                endpoint=path,
                retry_after_seconds=exc.wait_needed_seconds,
            ) from None

    # --- token ---------------------------------------------------------------------------------

    def _valid_token(self) -> str:
        with self._token_lock:
            if self._token is None or self._clock() >= self._token_renew_at():
                self._token = None
                self._fetch_token()
            assert self._token is not None
            return self._token

    def _renew_token(self, *, stale: str) -> str:
        with self._token_lock:
            # Another thread may already have renewed it after the same 401.
            if self._token is None or self._token == stale:
                self._token = None
                self._fetch_token()
            assert self._token is not None
            return self._token

    def _token_renew_at(self) -> float:
        lifetime = self._token_lifetime
        # A margin as long as the token's life would renew before every request; keep at least
        # half the life usable.
        margin = min(self.token_renew_margin_seconds, lifetime / 2)
        return self._token_expires_at - margin

    def _fetch_token(self) -> None:
        payload = wire.dumps({"username": self._username, "password": self._password})
        response = self._send(TOKEN_PATH, payload, token=None)
        if response.status_code in (400, 401, 403):
            raise AtlasAuthenticationError(
                _error_message(response) or "the service account credentials were refused",
                endpoint=TOKEN_PATH,
                status=response.status_code,
            )
        body = _decode(response) if 200 <= response.status_code < 300 else None
        if isinstance(body, Mapping) and "success" not in body:
            # A gateway's bare OAuth-style answer ({"token": ...} or {"access_token": ...}).
            envelope: Mapping[str, Any] = body
        else:
            envelope = _checked_envelope(TOKEN_PATH, response, clock=self._clock)
        token, lifetime = token_from_answer(envelope)
        self._token = token
        self._token_lifetime = float(lifetime)
        self._token_expires_at = self._clock() + float(lifetime)
        self.stats.token_renewals += 1
        logger.info(
            "ATLAS token obtained, valid %ds", lifetime, extra={"expires_in_seconds": lifetime}
        )


# --- helpers -----------------------------------------------------------------------------------


# Where ATLAS deployments put the token: the guide never shows the answer, CONTRACT.md pins
# data.token, and OAuth-style gateways in front of ATLAS answer data.access_token or a
# top-level token. The first non-empty string wins, in this order.
TOKEN_LOCATIONS: tuple[tuple[str, ...], ...] = (
    ("data", "token"),
    ("data", "access_token"),
    ("data", "accessToken"),
    ("token",),
    ("access_token",),
)
LIFETIME_KEYS: tuple[str, ...] = ("expiresIn", "expires_in")


def token_from_answer(envelope: Mapping[str, Any]) -> tuple[str, float]:
    """(token, lifetime in seconds) from the answer of POST /api/token, read tolerantly.

    The token is looked for at each of TOKEN_LOCATIONS; the lifetime (expiresIn or
    expires_in, beside the token) is optional and defaults to the guide's one hour. Raises
    AtlasProtocolError naming every place looked at when there is no token.
    """
    for path in TOKEN_LOCATIONS:
        holder: Any = envelope
        for key in path[:-1]:
            holder = holder.get(key) if isinstance(holder, Mapping) else None
        token = holder.get(path[-1]) if isinstance(holder, Mapping) else None
        if isinstance(token, str) and token.strip():
            lifetime = next(
                (holder[key] for key in LIFETIME_KEYS if key in holder),
                DEFAULT_TOKEN_LIFETIME_SECONDS,
            )
            if isinstance(lifetime, str) and lifetime.strip().isdigit():
                lifetime = int(lifetime.strip())
            if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
                lifetime = DEFAULT_TOKEN_LIFETIME_SECONDS
            return token.strip(), float(lifetime)
    looked = ", ".join(".".join(path) for path in TOKEN_LOCATIONS)
    raise AtlasProtocolError(
        f"the token answer carries no token (looked at {looked}); check ATLAS_BASE_URL points "
        "at the ATLAS API and the service account may obtain tokens",
        endpoint=TOKEN_PATH,
    )


def _is_retryable(error: BaseException) -> bool:
    # A pacing timeout has already waited the pacer's whole bound: waiting again inside this
    # call would only hide it. The caller (a task retried later) may try again.
    if isinstance(error, AtlasPacingError):
        return False
    return isinstance(error, AtlasError) and error.retryable


def _applied_nothing(error: BaseException) -> bool:
    """True when ATLAS surely applied nothing: a 429 (refused before any work), our pacer's
    refusal, a failed token request, or a connection that was never made. A 5xx, a timeout
    after sending or a connection broken mid-request may have been applied."""
    if isinstance(error, AtlasRateLimitError):
        return True  # a 429, or our own pacer (AtlasPacingError) that sent nothing at all
    if isinstance(error, AtlasError) and error.endpoint == TOKEN_PATH:
        return True  # the token request failed: the write itself was never sent
    return bool(getattr(error, "never_sent", False))


def _is_retryable_create(error: BaseException) -> bool:
    return _is_retryable(error) and _applied_nothing(error)


def _is_create(record: Mapping[str, Any]) -> bool:
    # The guide: "Set id to 0 or omit it for creation."
    return not record.get("id")


def _refuse_floats(path: str, value: Any) -> None:
    """Amounts go out as Decimal: a float here already lost digits (0.1 + 0.2)."""
    if isinstance(value, float):
        raise TypeError(f"{path}: amounts must be Decimal, not float ({value!r})")
    if isinstance(value, Mapping):
        for item in value.values():
            _refuse_floats(path, item)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_floats(path, item)


def _never_reached_server(exc: BaseException) -> bool:
    """True when the request surely never reached ATLAS (refused, DNS, connect timeout)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, requests.ConnectTimeout) or type(current).__name__ in (
            "NewConnectionError",
            "NameResolutionError",
            "ConnectTimeoutError",
        ):
            return True
        reason = getattr(current, "reason", None)
        nested = next(
            (a for a in getattr(current, "args", ()) if isinstance(a, BaseException)), None
        )
        current = (
            reason
            if isinstance(reason, BaseException)
            else (nested or current.__cause__ or current.__context__)
        )
    return False


def _chunks(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _check_ids(ids: Iterable[Any], kind: type) -> None:
    for value in ids:
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"ATLAS ids are integers, got {value!r}")
        if kind is str and (not isinstance(value, str) or not value):
            raise TypeError(f"ATLAS external ids are non-empty text, got {value!r}")


def _network_reason(exc: requests.RequestException) -> str:
    # The class name says what happened (ConnectionError, ChunkedEncodingError, ...); requests'
    # own text names host and path only, never headers, but it is long: keep the start.
    reason = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {reason[:ERROR_BODY_EXCERPT]}".rstrip(": ")


def _decode(response: requests.Response) -> Any:
    try:
        return wire.loads(response.content)
    except ValueError:
        return None


def _error_message(response: requests.Response) -> str:
    body = _decode(response)
    if isinstance(body, Mapping):
        message = body.get("message") or body.get("error") or body.get("title")
        if isinstance(message, str) and message.strip():
            return message.strip()
    text = response.text.strip() if response.content else ""
    return text[:ERROR_BODY_EXCERPT]


def _retry_after_seconds(
    response: requests.Response, *, clock: Callable[[], float]
) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - clock())


def _checked_envelope(
    path: str, response: requests.Response, *, clock: Callable[[], float]
) -> Mapping[str, Any]:
    """The envelope of a successful answer, or the typed error for this status/body."""
    status = response.status_code
    if status == 429:
        raise AtlasRateLimitError(
            _error_message(response) or "too many requests",
            endpoint=path,
            status=429,
            retry_after_seconds=_retry_after_seconds(response, clock=clock),
        )
    if status in _AUTH_STATUSES:
        raise AtlasAuthenticationError(
            _error_message(response) or "not authorised", endpoint=path, status=status
        )
    if status >= 500:
        raise AtlasServerError(
            _error_message(response) or "server error", endpoint=path, status=status
        )
    if status >= 400:
        raise AtlasBadRequestError(
            _error_message(response) or "request rejected", endpoint=path, status=status
        )
    if not 200 <= status < 300:
        raise AtlasProtocolError(f"unexpected HTTP status {status}", endpoint=path, status=status)
    body = _decode(response)
    if not isinstance(body, Mapping) or "success" not in body:
        what = "not JSON" if body is None else "not the ATLAS envelope"
        raise AtlasProtocolError(f"answer is {what}", endpoint=path, status=status)
    if body.get("success") is not True:
        message = body.get("message")
        raise AtlasProtocolError(
            message if isinstance(message, str) and message else "answer says success: false",
            endpoint=path,
            status=status,
        )
    return body


def _envelope_records(path: str, envelope: Mapping[str, Any]) -> list[Any]:
    data = envelope.get("data")
    if data is None:
        return []
    if isinstance(data, list):
        return data
    if isinstance(data, Mapping):
        # Tolerated: a single-object answer (e.g. to `{"data": 42}`) is one record.
        return [data]
    raise AtlasProtocolError(
        f"envelope 'data' must be a list of records, got {type(data).__name__}", endpoint=path
    )
