"""Tampering controls of both sandboxes, for the reconciliation tests and the demo.

Each one does to the fake what happens to the real systems behind ledger_sync's back:
- ATLAS: an order (its items, its total) is changed after it was posted;
- AR Ledger: a stray transaction carrying our reference prefix appears, a posted transaction
  disappears, a posted transaction's entries are edited, or a transaction is duplicated under
  the same reference. The ledger's API refuses to edit or delete a posted transaction, so these
  work on the stored data directly, as a database fix would.

Mixed into AtlasSandbox and GotransverseSandbox (Python API for tests) and served by their
`/_sandbox/tamper` control endpoints (loopback only) for the demo. No Django imports.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

CENT = Decimal("0.01")


def _decimal(value: Any, name: str) -> Decimal:
    try:
        amount = Decimal(str(value))
    except (ArithmeticError, ValueError):
        raise ValueError(f"{name} must be a decimal amount, got {value!r}") from None
    if amount != amount.quantize(CENT):
        raise ValueError(f"{name} has more than 2 decimal places: {value!r}")
    return amount


class AtlasTampering:
    """Change an order after it was posted (needs `dataset` and `_lock` of AtlasSandbox)."""

    dataset: Any
    _lock: Any

    def tamper_order(
        self,
        order_id: int,
        *,
        item_id: int | None = None,
        net_amount: Decimal | str | None = None,
        vat_amount: Decimal | str | None = None,
        total_amount: Decimal | str | None = None,
    ) -> dict[str, Any]:
        """Change one item's net/VAT (the order's totalAmount follows by the same gross
        difference) and/or set the order's totalAmount directly. Returns the order as stored."""
        with self._lock:
            if order_id not in self.dataset.orders:
                raise KeyError(f"Order {order_id} does not exist")
            order = self.dataset.orders[order_id]
            if item_id is not None:
                item = self.dataset.order_items.get(item_id)
                if item is None or item.get("orderId") != order_id:
                    raise KeyError(f"Order item {item_id} is not an item of order {order_id}")
                before = _decimal(item["netAmount"], "netAmount") + _decimal(
                    item["vatAmount"], "vatAmount"
                )
                if net_amount is not None:
                    item["netAmount"] = _decimal(net_amount, "net_amount")
                if vat_amount is not None:
                    item["vatAmount"] = _decimal(vat_amount, "vat_amount")
                after = _decimal(item["netAmount"], "netAmount") + _decimal(
                    item["vatAmount"], "vatAmount"
                )
                order["totalAmount"] = _decimal(order["totalAmount"], "totalAmount") + (
                    after - before
                )
            if total_amount is not None:
                order["totalAmount"] = _decimal(total_amount, "total_amount")
            return dict(order)

    def _control_tamper(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST /_sandbox/tamper {"orderId", "itemId"?, "netAmount"?, "vatAmount"?,
        "totalAmount"?}."""
        order = self.tamper_order(
            int(body["orderId"]),
            item_id=int(body["itemId"]) if body.get("itemId") is not None else None,
            net_amount=body.get("netAmount"),
            vat_amount=body.get("vatAmount"),
            total_amount=body.get("totalAmount"),
        )
        return {"order": order}


class LedgerTampering:
    """Change the AR Ledger sandbox's stored posted transactions behind its API."""

    _transactions: dict[int, Any]
    _transaction_ids: Any
    _entry_ids: Any
    _lock: Any
    clock: Any

    # GotransverseSandbox provides _read_entries, _new_transaction, _post and the account index.

    def tamper_add_transaction(
        self,
        *,
        source_transaction_reference: str,
        entries: list[dict[str, Any]],
    ) -> Any:
        """Post a transaction nobody sent through ledger_sync (entries in the bulk endpoint's
        wire form: gl_account_num, credit, amount {amount, currency}, occurred_on, ...)."""
        from integration.sandbox.gotransverse import TransactionInvalid

        with self._lock:
            try:
                stored = self._read_entries(  # type: ignore[attr-defined]
                    entries, account_by="number"
                )
                transaction = self._new_transaction(  # type: ignore[attr-defined]
                    stored,
                    source_transaction_reference=source_transaction_reference,
                    source_batch_reference=None,
                    target_batch_key="TAMPERED",
                )
                self._post(transaction)  # type: ignore[attr-defined]
            except TransactionInvalid as exc:
                raise ValueError(exc.message) from None
            self._transactions[transaction.id] = transaction
            return transaction

    def tamper_drop_transaction(self, transaction_id: int) -> Any:
        """Remove a posted transaction from the ledger (as if deleted in its database)."""
        with self._lock:
            transaction = self._posted(transaction_id)
            del self._transactions[transaction_id]
            return transaction

    def tamper_edit_entry(
        self,
        transaction_id: int,
        *,
        entry_index: int = 0,
        amount: Decimal | str | None = None,
        gl_account_num: str | None = None,
        credit: bool | None = None,
        billing_account_num: str | None = None,
    ) -> Any:
        """Change one stored entry of a posted transaction (nothing else is adjusted, so the
        transaction may no longer balance — exactly what a careless database fix does)."""
        with self._lock:
            transaction = self._posted(transaction_id)
            if not 0 <= entry_index < len(transaction.entries):
                raise ValueError(
                    f"transaction {transaction_id} has {len(transaction.entries)} entries; "
                    f"entry_index {entry_index} is out of range"
                )
            entry = transaction.entries[entry_index]
            if amount is not None:
                entry.amount = _decimal(amount, "amount")
            if gl_account_num is not None:
                account = self._accounts_by_number.get(gl_account_num)  # type: ignore[attr-defined]
                if account is None:
                    raise ValueError(f"GL account {gl_account_num!r} is not in the chart")
                entry.gl_account_num = account.number
                entry.gl_account_id = account.id
                entry.gl_account_name = account.name
            if credit is not None:
                entry.credit = bool(credit)
            if billing_account_num is not None:
                entry.billing_account_num = billing_account_num or None
            return transaction

    def tamper_duplicate_transaction(self, transaction_id: int) -> Any:
        """Post a second copy of a posted transaction under the same reference."""
        with self._lock:
            original = self._posted(transaction_id)
            duplicate = copy.deepcopy(original)
            duplicate.id = next(self._transaction_ids)
            duplicate.target_batch_key = "TAMPERED"
            now: datetime = self.clock.now()
            duplicate.created_on = now
            duplicate.posted_on = now
            for entry in duplicate.entries:
                entry.id = next(self._entry_ids)
                entry.posted_on = now
            self._transactions[duplicate.id] = duplicate
            return duplicate

    def _posted(self, transaction_id: int) -> Any:
        transaction = self._transactions.get(transaction_id)
        if transaction is None or not transaction.is_posted:
            raise KeyError(f"no posted transaction {transaction_id}")
        return transaction

    def _control_tamper_apply(self, body: Mapping[str, Any]) -> Any:
        """POST /_sandbox/tamper {"action": "add" | "drop" | "edit" | "duplicate", ...}."""
        action = body.get("action")
        if action == "add":
            return self.tamper_add_transaction(
                source_transaction_reference=str(body["source_transaction_reference"]),
                entries=list(body["entries"]),
            )
        if action == "drop":
            return self.tamper_drop_transaction(int(body["transaction_id"]))
        if action == "edit":
            return self.tamper_edit_entry(
                int(body["transaction_id"]),
                entry_index=int(body.get("entry_index", 0)),
                amount=body.get("amount"),
                gl_account_num=body.get("gl_account_num"),
                credit=body.get("credit"),
                billing_account_num=body.get("billing_account_num"),
            )
        if action == "duplicate":
            return self.tamper_duplicate_transaction(int(body["transaction_id"]))
        raise ValueError('action must be one of "add", "drop", "edit", "duplicate"')
