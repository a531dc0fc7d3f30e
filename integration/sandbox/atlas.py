"""A stateful HTTP fake of the ATLAS ETRM API, for tests, the demo and load tests.

It behaves like the integration guide and ../shared/CONTRACT.md describe ATLAS: every endpoint
is POST with JSON, reads take `{"data": []}` / `{"data": [ids]}` / `{"data": id}`, every answer
is the `{"success", "recordCount", "data"}` envelope, JWT bearer tokens expire after an hour
(on the sandbox clock), 100 requests a minute per client then 429, writes are upserts.

Tests look inside through `calls` (what was asked, never a token or password), `dataset` (the
records as ATLAS holds them) and `webhook_deliveries`; they drive it with the clock
(`clock.advance`), the fault configuration (`faults`), `expire_tokens()` and
`set_order_status()`, which also sends the signed webhook. The same controls are served over
HTTP under `/_sandbox/...` (loopback only) for the demo and load tests.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import math
import re
import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import jwt
import requests
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from integration.http import TimeoutSession
from integration.sandbox.atlas_seed import (
    ORDER_STATUSES,
    STATUS_DRAFT,
    AtlasDataset,
    build_atlas_dataset,
)
from integration.sandbox.clock import SandboxClock
from integration.sandbox.faults import Fault, FaultConfig
from integration.sandbox.payment_case import PaymentCase, add_payment_case
from integration.sandbox.tampering import AtlasTampering
from integration.wire import dumps, loads

TOKEN_PATH = "/api/token"
CONTROL_PREFIX = "/_sandbox"
LOOPBACK_ADDRESSES = frozenset({"127.0.0.1", "::1", "localhost"})
RATE_WINDOW_SECONDS = 60.0
WEBHOOK_TIMEOUT_SECONDS = 5.0
JSON_CONTENT_TYPE = "application/json; charset=utf-8"


@dataclass(frozen=True)
class RecordedCall:
    """One request the sandbox answered. Never holds a token or a password."""

    method: str
    path: str
    body: Any  # parsed JSON (Decimal amounts); the password of a token call is replaced
    status: int
    had_bearer_token: bool
    client: str | None  # token subject, or the username of a token call
    at: datetime
    fault: str | None = None  # kind of injected fault, if one was applied


@dataclass(frozen=True)
class WebhookDelivery:
    """One webhook POST the sandbox attempted, and how the receiver answered."""

    url: str
    body: str
    signature: str | None
    status_code: int | None
    error: str | None
    at: datetime

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class AtlasError(Exception):
    """An error answer: `{"success": false, "message": ...}` with an HTTP status."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


# --- Read and write routes ----------------------------------------------------------------------

# path -> (entity, how the `data` of the request selects records)
_READS: dict[str, tuple[str, str]] = {
    "/api/CustomFields/GetTypes": ("custom_field_types", "ids"),
    "/api/CustomFields/Counterparties/GetByCounterpartyTypeIds": (
        "counterparty_custom_fields",
        "counterparty_type_ids",
    ),
    "/api/Counterparty/GetByIds": ("counterparties", "ids"),
    "/api/Order/GetByIds": ("orders", "ids"),
    "/api/OrderItem/GetByIds": ("order_items", "ids"),
    "/api/OrderItem/GetByOrderIds": ("order_items", "order_ids"),
    "/api/Invoice/GetByIds": ("invoices", "ids"),
    "/api/Invoice/GetByExternalIds": ("invoices", "external_ids"),
    "/api/Invoice/GetByOrderId": ("invoices", "order_ids"),
    "/api/Payment/GetByInvoiceIds": ("payments", "invoice_ids"),
    "/api/Payment/GetByOrderIds": ("payments", "order_ids"),
}
_WRITES: dict[str, str] = {
    "/api/Counterparty/Post": "counterparties",
    "/api/Order/Post": "orders",
    "/api/Invoice/Post": "invoices",
    "/api/Payment/Post": "payments",
}
_ENTITY_LABEL = {
    "counterparties": "Counterparty",
    "orders": "Order",
    "order_items": "OrderItem",
    "invoices": "Invoice",
    "payments": "Payment",
}
# Fields a write must carry, on create and (for orders, as the guide insists) on update too.
_REQUIRED_ON_CREATE = {
    "counterparties": ("name",),
    "orders": ("counterpartyId", "registrationDate", "dueDate", "totalAmount"),
    "invoices": ("orderId", "amount"),
    "payments": ("invoiceId", "amount"),
}
_REQUIRED_ALWAYS = {"orders": ("registrationDate", "dueDate", "totalAmount")}
_AMOUNT_FIELDS = {
    "orders": ("totalAmount",),
    "invoices": ("amount",),
    "payments": ("amount",),
}
_DATE_FIELDS = {
    "orders": ("registrationDate", "dueDate", "periodFrom", "periodTo"),
    "invoices": ("invoiceDate", "dueDate"),
    "payments": ("paymentDate",),
}
_DEFAULTS: dict[str, dict[str, Any]] = {
    "counterparties": {
        "legalName": None,
        "externalId": None,
        "counterpartyTypeId": None,
        "vat": None,
        "glAccount": None,
        "iban": None,
        "swiftBic": None,
        "selfBilling": False,
        "customFieldValues": [],
    },
    "orders": {
        "status": STATUS_DRAFT,
        "erpCode": None,
        "documentReference": None,
        "currency": "EUR",
        "periodFrom": None,
        "periodTo": None,
    },
    "invoices": {
        "externalId": None,
        "invoiceNumber": None,
        "invoiceDate": None,
        "dueDate": None,
        "isPaid": False,
    },
    "payments": {"externalId": None, "paymentDate": None},
}

_CONTROL_ORDER_STATUS = re.compile(r"^/_sandbox/orders/(\d+)/status$")
_CONTROL_ITEM_STATUS = re.compile(r"^/_sandbox/order-items/(\d+)/status$")


class AtlasSandbox(AtlasTampering):
    """The ATLAS API as a WSGI app, holding its records in memory (thread-safe)."""

    def __init__(
        self,
        dataset: AtlasDataset,
        *,
        username: str = "ledger-sync",
        password: str = "sandbox-password",  # noqa: S107 - the documented sandbox default
        token_lifetime_seconds: int = 3600,
        rate_limit_per_minute: int | None = 100,
        clock: SandboxClock | None = None,
        faults: FaultConfig | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        record_calls: bool = True,
        max_recorded_calls: int | None = None,
    ):
        if token_lifetime_seconds <= 0:
            raise ValueError("token_lifetime_seconds must be positive")
        if rate_limit_per_minute is not None and rate_limit_per_minute <= 0:
            raise ValueError("rate_limit_per_minute must be positive, or None for no limit")
        self.dataset = dataset
        # The orders of integration/sandbox/payment_case.py, when create_atlas_sandbox added them.
        self.payment_case: PaymentCase | None = None
        self.username = username
        self._password = password
        self.token_lifetime_seconds = token_lifetime_seconds
        self.rate_limit_per_minute = rate_limit_per_minute
        self.clock = clock or SandboxClock()
        self.faults = faults or FaultConfig()
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.record_calls = record_calls
        self._sleep = sleep
        # A fresh signing key per sandbox: tokens of one sandbox never work on another.
        self._signing_key = secrets.token_hex(32)
        self._token_generation = 0
        self._token_ids = itertools.count(1)
        self._lock = threading.RLock()
        # A long-running sandbox (demo, load test) keeps only the latest calls when capped.
        self._calls: deque[RecordedCall] = deque(maxlen=max_recorded_calls)
        self._calls_lock = threading.Lock()
        self._rate_windows: dict[str, deque[float]] = defaultdict(deque)
        self._rate_lock = threading.Lock()
        self.webhook_deliveries: list[WebhookDelivery] = []
        self._webhook_session = TimeoutSession(timeout=WEBHOOK_TIMEOUT_SECONDS)
        self._build_indexes()

    # --- observability -----------------------------------------------------------------------

    @property
    def calls(self) -> list[RecordedCall]:
        """Every API call answered so far (a copy), oldest first. Control calls are not listed."""
        with self._calls_lock:
            return list(self._calls)

    def calls_to(self, path: str) -> list[RecordedCall]:
        """The calls to one path, e.g. `calls_to("/api/Order/Post")`."""
        return [call for call in self.calls if call.path == path]

    def reset_calls(self) -> None:
        with self._calls_lock:
            self._calls.clear()

    def expire_tokens(self) -> None:
        """Every token issued so far is refused from now on (401), as if it had run out."""
        with self._lock:
            self._token_generation += 1

    def reset_rate_limit(self) -> None:
        with self._rate_lock:
            self._rate_windows.clear()

    # --- state changes a test or the demo makes (what ATLAS operations would do) ---------------

    def set_order_status(self, order_id: int, status: str) -> WebhookDelivery | None:
        """Change an order's status, then send the `order.status_changed` webhook.

        Returns the delivery (also kept in `webhook_deliveries`), or None when no webhook URL
        is configured. A receiver that fails or is down is recorded, never raised.
        """
        with self._lock:
            order = self._get("orders", order_id)
            order["status"] = status
        return self.send_webhook(
            {
                "event": "order.status_changed",
                "entityType": "Order",
                "entityId": order_id,
                "newStatus": status,
                "timestamp": self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )

    def set_order_item_status(self, item_id: int, status: int) -> dict[str, Any]:
        """Change an order item's status (0 Calculated, 1 Edited, 2 In Order). No webhook."""
        if status not in (0, 1, 2):
            raise ValueError(f"order item status must be 0, 1 or 2, got {status!r}")
        with self._lock:
            item = self._get("order_items", item_id)
            item["status"] = status
            return dict(item)

    def close(self) -> None:
        """Drop the webhook sender's kept-alive connections. Until then the receiver keeps a
        server thread (and whatever it holds, such as a database connection) waiting on each."""
        self._webhook_session.close()

    def send_webhook(self, payload: dict[str, Any]) -> WebhookDelivery | None:
        """POST a signed webhook to `webhook_url` and record the outcome."""
        if not self.webhook_url:
            return None
        body = dumps(payload)
        headers = {"Content-Type": "application/json"}
        signature = None
        if self.webhook_secret:
            digest = hmac.new(self.webhook_secret.encode(), body.encode(), hashlib.sha256)
            signature = f"sha256={digest.hexdigest()}"
            headers["X-Atlas-Signature"] = signature
        status_code: int | None = None
        error: str | None = None
        try:
            response = self._webhook_session.post(
                self.webhook_url, data=body.encode(), headers=headers
            )
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"receiver answered HTTP {status_code}"
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {exc}"
        delivery = WebhookDelivery(
            url=self.webhook_url,
            body=body,
            signature=signature,
            status_code=status_code,
            error=error,
            at=self.clock.now(),
        )
        with self._lock:
            self.webhook_deliveries.append(delivery)
        return delivery

    # --- WSGI ----------------------------------------------------------------------------------

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        request = Request(environ)
        try:
            if request.path.startswith(CONTROL_PREFIX):
                response = self._control(request)
            else:
                response = self._api(request)
        except HTTPException as exc:  # pragma: no cover - werkzeug's own parsing errors
            response = exc.get_response(environ)
        return response(environ, start_response)

    def _api(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        body: Any = None
        client: str | None = None
        fault: Fault | None = None
        had_token = request.headers.get("Authorization", "").lower().startswith("bearer ")
        try:
            fault = self.faults.next_fault(path)
            if fault is not None:
                if fault.delay_seconds:
                    self._sleep(fault.delay_seconds)
                if fault.expire_tokens:
                    self.expire_tokens()
                if fault.status is not None:
                    headers = {}
                    if fault.retry_after is not None:
                        headers["Retry-After"] = str(fault.retry_after)
                    raise AtlasError(fault.status, fault.message, headers=headers)
            if path != TOKEN_PATH and path not in _READS and path not in _WRITES:
                raise AtlasError(404, f"No ATLAS endpoint at {path}")
            if request.method != "POST":
                raise AtlasError(405, f"{path} accepts POST only", headers={"Allow": "POST"})
            body = self._parse_body(request)
            if path == TOKEN_PATH:
                client = body.get("username") if isinstance(body, dict) else None
                self._check_rate(client or request.remote_addr or "anonymous")
                payload: Any = self._issue_token(body)
                response = _json_response(200, dumps({"success": True, "data": payload}))
            else:
                client = self._authenticate(request)
                self._check_rate(client)
                if path in _READS:
                    response = _json_response(200, self._read(path, body))
                else:
                    response = _json_response(200, self._write(path, body))
        except AtlasError as exc:
            response = _json_response(
                exc.status, dumps({"success": False, "message": exc.message}), exc.headers
            )
        self._record(request, path, body, response.status_code, had_token, client, fault)
        return response

    # --- auth and rate limit ------------------------------------------------------------------

    def _issue_token(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not body.get("username") or not body.get("password"):
            raise AtlasError(400, "Token request needs 'username' and 'password'")
        # Bytes: compare_digest refuses non-ASCII str with a TypeError (a 500, not a 401).
        username_ok = hmac.compare_digest(str(body["username"]).encode(), self.username.encode())
        password_ok = hmac.compare_digest(str(body["password"]).encode(), self._password.encode())
        if not (username_ok and password_ok):
            raise AtlasError(401, "Invalid username or password")
        issued_at = int(self.clock.time())
        with self._lock:
            generation = self._token_generation
            token_id = next(self._token_ids)
        claims = {
            "sub": self.username,
            "iat": issued_at,
            "exp": issued_at + self.token_lifetime_seconds,
            "gen": generation,
            "jti": str(token_id),
        }
        token = jwt.encode(claims, self._signing_key, algorithm="HS256")
        return {"token": token, "expiresIn": self.token_lifetime_seconds}

    def _authenticate(self, request: Request) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AtlasError(
                401, "Authorization: Bearer <token> is required; get one at /api/token"
            )
        try:
            # Expiry is checked against the sandbox clock below, not the machine's.
            claims = jwt.decode(
                token.strip(),
                self._signing_key,
                algorithms=["HS256"],
                options={"verify_exp": False, "require": ["sub", "exp", "gen"]},
            )
        except jwt.InvalidTokenError:
            raise AtlasError(401, "Invalid token") from None
        if claims["exp"] <= self.clock.time():
            raise AtlasError(401, "Token expired")
        if claims["gen"] != self._token_generation:
            raise AtlasError(401, "Token expired")
        return str(claims["sub"])

    def _check_rate(self, client: str) -> None:
        if self.rate_limit_per_minute is None:
            return
        now = self.clock.time()
        with self._rate_lock:
            window = self._rate_windows[client]
            while window and window[0] <= now - RATE_WINDOW_SECONDS:
                window.popleft()
            if len(window) >= self.rate_limit_per_minute:
                retry_after = max(1, math.ceil(window[0] + RATE_WINDOW_SECONDS - now))
                raise AtlasError(
                    429,
                    f"Rate limit of {self.rate_limit_per_minute} requests per minute exceeded",
                    headers={"Retry-After": str(retry_after)},
                )
            window.append(now)

    # --- reads -----------------------------------------------------------------------------------

    def _read(self, path: str, body: Any) -> str:
        entity, selector = _READS[path]
        selection = _selection(body, strings=selector == "external_ids")
        with self._lock:
            records = self._select(entity, selector, selection)
            # simplejson's C encoder writes 50,000 items in about 0.2 s: no cache needed, so
            # a test that edits `dataset` directly is seen at once.
            return dumps({"success": True, "recordCount": len(records), "data": records})

    def _select(
        self, entity: str, selector: str, selection: list[Any] | None
    ) -> list[dict[str, Any]]:
        records: dict[int, dict[str, Any]] = getattr(self.dataset, entity)
        if selection is None:
            return list(records.values())
        if selector == "ids":
            return [records[i] for i in _unique(selection) if i in records]
        if selector == "counterparty_type_ids":
            wanted = set(selection)
            return [r for r in records.values() if wanted & set(r.get("counterpartyTypeIds", []))]
        index = {
            ("order_items", "order_ids"): self._items_by_order,
            ("invoices", "order_ids"): self._invoices_by_order,
            ("invoices", "external_ids"): self._invoices_by_external_id,
            ("payments", "invoice_ids"): self._payments_by_invoice,
            ("payments", "order_ids"): self._payments_by_order,
        }[(entity, selector)]
        ids = sorted({rid for key in _unique(selection) for rid in index.get(key, ())})
        return [records[i] for i in ids]

    # --- writes ----------------------------------------------------------------------------------

    def _write(self, path: str, body: Any) -> str:
        entity = _WRITES[path]
        label = _ENTITY_LABEL[entity]
        if not isinstance(body, dict) or "data" not in body:
            raise AtlasError(400, f'{path} needs a body {{"data": [records]}}')
        data = body["data"]
        if isinstance(data, dict):
            data = [data]
        if not isinstance(data, list) or not data:
            raise AtlasError(400, f"{path}: 'data' must be a non-empty list of {label} records")
        with self._lock:
            # Validate every record before saving any: a bad batch changes nothing.
            for index, record in enumerate(data):
                self._validate_write(entity, label, index, record)
            saved = [self._upsert(entity, record) for record in data]
            return dumps({"success": True, "recordCount": len(saved), "data": saved})

    def _validate_write(self, entity: str, label: str, index: int, record: Any) -> None:
        where = f"{label} at index {index}"
        if not isinstance(record, dict):
            raise AtlasError(400, f"{where} must be a JSON object")
        records: dict[int, dict[str, Any]] = getattr(self.dataset, entity)
        record_id = record.get("id", 0)
        if record_id is None:
            record_id = 0
        if isinstance(record_id, bool) or not isinstance(record_id, int) or record_id < 0:
            raise AtlasError(400, f"{where}: 'id' must be 0 (create) or an existing {label} id")
        creating = record_id == 0
        if not creating and record_id not in records:
            raise AtlasError(
                400, f"{label} {record_id} does not exist; send id 0 or no id to create one"
            )
        if not creating:
            where = f"{label} {record_id}"
        required = _REQUIRED_ON_CREATE[entity] if creating else _REQUIRED_ALWAYS.get(entity, ())
        for name in required:
            if record.get(name) is None:
                raise AtlasError(400, f"{where}: '{name}' is required")
        for name in _AMOUNT_FIELDS.get(entity, ()):
            if name in record and record[name] is not None:
                value = record[name]
                if isinstance(value, bool) or not isinstance(value, int | Decimal):
                    raise AtlasError(400, f"{where}: '{name}' must be a number, got {value!r}")
        for name in _DATE_FIELDS.get(entity, ()):
            if name in record and record[name] is not None and not _is_iso_date(record[name]):
                raise AtlasError(
                    400, f"{where}: '{name}' must be an ISO 8601 date, got {record[name]!r}"
                )
        merged = {**(records.get(record_id) or {}), **record}
        if entity == "orders" and merged.get("counterpartyId") not in self.dataset.counterparties:
            raise AtlasError(
                400, f"{where}: counterparty {merged.get('counterpartyId')!r} does not exist"
            )
        if entity == "invoices" and merged.get("orderId") not in self.dataset.orders:
            raise AtlasError(400, f"{where}: order {merged.get('orderId')!r} does not exist")
        if entity == "payments":
            invoice = self.dataset.invoices.get(merged.get("invoiceId"))  # type: ignore[arg-type]
            if invoice is None:
                raise AtlasError(
                    400, f"{where}: invoice {merged.get('invoiceId')!r} does not exist"
                )
            order_id = merged.get("orderId")
            if order_id is not None and order_id != invoice["orderId"]:
                raise AtlasError(
                    400,
                    f"{where}: order {order_id} is not the order of invoice {invoice['id']} "
                    f"(order {invoice['orderId']})",
                )
        if entity == "orders" and "status" in record and record["status"] not in ORDER_STATUSES:
            raise AtlasError(400, f"{where}: unknown status {record['status']!r}")

    def _upsert(self, entity: str, record: dict[str, Any]) -> dict[str, Any]:
        records: dict[int, dict[str, Any]] = getattr(self.dataset, entity)
        record_id = record.get("id") or 0
        if record_id == 0:
            record_id = self.dataset.next_id(entity)
            saved = {"id": record_id, **_DEFAULTS.get(entity, {})}
            saved.update({k: v for k, v in record.items() if k != "id"})
            saved["id"] = record_id
            if entity == "payments" and saved.get("orderId") is None:
                saved["orderId"] = self.dataset.invoices[saved["invoiceId"]]["orderId"]
            records[record_id] = saved
        else:
            saved = records[record_id]
            old = dict(saved)
            saved.update({k: v for k, v in record.items() if k != "id"})
            self._unindex(entity, old)
        self._index(entity, saved)
        return dict(saved)

    # --- indexes -------------------------------------------------------------------------------

    def _build_indexes(self) -> None:
        self._items_by_order: dict[Any, list[int]] = defaultdict(list)
        self._invoices_by_order: dict[Any, list[int]] = defaultdict(list)
        self._invoices_by_external_id: dict[Any, list[int]] = defaultdict(list)
        self._payments_by_invoice: dict[Any, list[int]] = defaultdict(list)
        self._payments_by_order: dict[Any, list[int]] = defaultdict(list)
        for entity in ("order_items", "invoices", "payments"):
            for record in getattr(self.dataset, entity).values():
                self._index(entity, record)

    def _index_targets(self, entity: str) -> list[tuple[dict[Any, list[int]], str]]:
        return {
            "order_items": [(self._items_by_order, "orderId")],
            "invoices": [
                (self._invoices_by_order, "orderId"),
                (self._invoices_by_external_id, "externalId"),
            ],
            "payments": [
                (self._payments_by_invoice, "invoiceId"),
                (self._payments_by_order, "orderId"),
            ],
        }.get(entity, [])

    def _index(self, entity: str, record: dict[str, Any]) -> None:
        for index, key in self._index_targets(entity):
            value = record.get(key)
            if value is not None and record["id"] not in index[value]:
                index[value].append(record["id"])

    def _unindex(self, entity: str, record: dict[str, Any]) -> None:
        for index, key in self._index_targets(entity):
            value = record.get(key)
            if value is not None and record["id"] in index.get(value, ()):
                index[value].remove(record["id"])

    def _get(self, entity: str, record_id: int) -> dict[str, Any]:
        records: dict[int, dict[str, Any]] = getattr(self.dataset, entity)
        try:
            return records[record_id]
        except KeyError:
            raise KeyError(f"{_ENTITY_LABEL[entity]} {record_id} does not exist") from None

    # --- request helpers ----------------------------------------------------------------------

    def _parse_body(self, request: Request) -> Any:
        raw = request.get_data(cache=True)
        if not raw:
            raise AtlasError(400, "A JSON body is required")
        try:
            return loads(raw)
        except ValueError as exc:
            raise AtlasError(400, f"Body is not valid JSON: {exc}") from None

    def _record(
        self,
        request: Request,
        path: str,
        body: Any,
        status: int,
        had_token: bool,
        client: str | None,
        fault: Fault | None,
    ) -> None:
        if not self.record_calls:
            return
        if path == TOKEN_PATH and isinstance(body, dict) and "password" in body:
            body = {**body, "password": "[redacted]"}
        call = RecordedCall(
            method=request.method,
            path=path,
            body=body,
            status=status,
            had_bearer_token=had_token,
            client=client,
            at=self.clock.now(),
            fault=fault.kind if fault is not None else None,
        )
        with self._calls_lock:
            self._calls.append(call)

    # --- control endpoints (loopback only; not recorded, never faulted) -----------------------

    def _control(self, request: Request) -> Response:
        if request.remote_addr not in LOOPBACK_ADDRESSES:
            return _control_response(403, {"error": "sandbox controls answer loopback only"})
        path = request.path.rstrip("/")
        try:
            body = loads(request.get_data()) if request.get_data() else {}
        except ValueError as exc:
            return _control_response(400, {"error": f"body is not valid JSON: {exc}"})
        try:
            return self._control_route(request.method, path, body)
        except (KeyError, ValueError, TypeError) as exc:
            message = exc.args[0] if exc.args else str(exc)
            return _control_response(400, {"error": str(message)})

    def _control_route(self, method: str, path: str, body: Any) -> Response:
        if method == "POST" and (match := _CONTROL_ORDER_STATUS.match(path)):
            delivery = self.set_order_status(int(match.group(1)), str(body["status"]))
            with self._lock:
                order = dict(self.dataset.orders[int(match.group(1))])
            return _control_response(
                200,
                {"order": order, "webhook": _delivery_json(delivery) if delivery else None},
            )
        if method == "POST" and (match := _CONTROL_ITEM_STATUS.match(path)):
            item = self.set_order_item_status(int(match.group(1)), int(body["status"]))
            return _control_response(200, {"orderItem": item})
        if path == "/_sandbox/faults" and method == "GET":
            return _control_response(200, self.faults.snapshot())
        if path == "/_sandbox/faults" and method == "POST":
            if body.get("clear"):
                self.faults.clear()
            self.faults.update(**{k: v for k, v in body.items() if k != "clear"})
            return _control_response(200, self.faults.snapshot())
        if path == "/_sandbox/calls" and method == "GET":
            return _control_response(200, {"calls": [_call_json(c) for c in self.calls]})
        if path == "/_sandbox/calls" and method == "DELETE":
            self.reset_calls()
            return _control_response(200, {"calls": []})
        if path == "/_sandbox/expire-tokens" and method == "POST":
            self.expire_tokens()
            return _control_response(200, {"expired": True})
        if path == "/_sandbox/clock/advance" and method == "POST":
            self.clock.advance(float(body["seconds"]))
            return _control_response(200, {"now": self.clock.now().isoformat()})
        if path == "/_sandbox/broken" and method == "GET":
            return _control_response(
                200, {"broken": self.dataset.broken, "notable": self.dataset.notable}
            )
        if path == "/_sandbox/tamper" and method == "POST":
            return _control_response(200, self._control_tamper(body))
        if path == "/_sandbox/webhooks" and method == "GET":
            with self._lock:
                deliveries = [_delivery_json(d) for d in self.webhook_deliveries]
            return _control_response(200, {"deliveries": deliveries})
        return _control_response(404, {"error": f"no sandbox control {method} {path}"})


def create_atlas_sandbox(
    *,
    seed: int = 2026,
    orders: int = 120,
    items_per_order: int = 5,
    document_cases: bool = False,
    payment_case: bool = False,
    **options: Any,
) -> AtlasSandbox:
    """An ATLAS sandbox seeded with `build_atlas_dataset(seed, orders, items_per_order,
    document_cases)`, and with `payment_case` the orders of integration/sandbox/payment_case.py
    (the case is kept as the sandbox's `payment_case`).

    Options are AtlasSandbox's keyword arguments: username, password, token_lifetime_seconds,
    rate_limit_per_minute (None disables), clock, faults, webhook_url, webhook_secret, sleep,
    record_calls, max_recorded_calls.
    """
    dataset = build_atlas_dataset(
        seed=seed, orders=orders, items_per_order=items_per_order, document_cases=document_cases
    )
    case = add_payment_case(dataset) if payment_case else None
    sandbox = AtlasSandbox(dataset, **options)
    sandbox.payment_case = case
    return sandbox


# --- helpers ------------------------------------------------------------------------------------


def _json_response(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    return Response(text, status=status, headers=headers, content_type=JSON_CONTENT_TYPE)


def _control_response(status: int, payload: Any) -> Response:
    return _json_response(status, dumps(payload))


def _selection(body: Any, *, strings: bool = False) -> list[Any] | None:
    """The ids a read asks for, or None for "all" (`{"data": []}`)."""
    if not isinstance(body, dict) or "data" not in body:
        raise AtlasError(
            400, 'Read requests need a body {"data": []}, {"data": [ids]} or {"data": id}'
        )
    data = body["data"]
    if data is None or data == []:
        return None
    values = data if isinstance(data, list) else [data]
    for value in values:
        if strings:
            if not isinstance(value, str):
                raise AtlasError(400, f"'data' must hold external ids (text), got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int):
            raise AtlasError(400, f"'data' must hold integer ids, got {value!r}")
    return values


def _unique(values: Iterable[Any]) -> Iterator[Any]:
    seen: set[Any] = set()
    for value in values:
        if value not in seen:
            seen.add(value)
            yield value


def _is_iso_date(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _call_json(call: RecordedCall) -> dict[str, Any]:
    data = asdict(call)
    data["at"] = call.at.isoformat()
    return data


def _delivery_json(delivery: WebhookDelivery) -> dict[str, Any]:
    data = asdict(delivery)
    data["at"] = delivery.at.isoformat()
    data["delivered"] = delivery.delivered
    return data


__all__ = [
    "AtlasError",
    "AtlasSandbox",
    "RecordedCall",
    "WebhookDelivery",
    "create_atlas_sandbox",
]
