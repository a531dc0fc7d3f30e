"""The one paging iterator every AR Ledger list call goes through.

The spec pages with `page_number` (from 1) and `page_size` (1..50, default 25) and answers
`X-Total-Count`, `X-Elements-Count` and `X-Total-Pages`. The iterator asks for page 1, then the
next page while the last `X-Total-Pages` says there are more; without that header it stops at
the first short page. It fetches lazily (a page only when the consumer needs its first item),
counts its requests, and stops on an empty page whatever the headers claim, so a ledger that
miscounts cannot loop it for ever.

A record that does not parse is not allowed to end the pass: it is kept in `errors`
(a RecordError naming the record and field) and skipped. A caller that must see every record
checks `errors` after iterating. Offset paging is not a snapshot: records written during the
pass may be skipped or seen twice, so mirrors key by id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from integration.gotransverse.records import RecordError

MAX_PAGE_SIZE = 50

T = TypeVar("T")


@dataclass(frozen=True)
class Page:
    """One page as the transport returned it: the JSON list and the paging headers."""

    items: list[Any]
    total_count: int | None
    elements_count: int | None
    total_pages: int | None


FetchPage = Callable[[Mapping[str, Any]], Page]


def capped_page_size(page_size: int) -> int:
    """The spec's maximum is 50: a larger size is capped, never sent; below 1 is a caller bug."""
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
        raise ValueError(f"page_size must be a positive integer, got {page_size!r}")
    return min(page_size, MAX_PAGE_SIZE)


class Paginator(Generic[T]):
    """Lazily iterates every record of a paged list, in the ledger's order.

    Iterate once. `requests` counts the pages fetched so far; `total_count` and `total_pages`
    hold the last headers seen; `errors` holds the records that could not be parsed.
    """

    def __init__(
        self,
        fetch: FetchPage,
        parse: Callable[[Any], T],
        *,
        params: Mapping[str, Any] | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ):
        self._fetch = fetch
        self._parse = parse
        self._params = dict(params or {})
        self.page_size = capped_page_size(page_size)
        self.requests = 0
        self.total_count: int | None = None
        self.total_pages: int | None = None
        self.errors: list[RecordError] = []
        self._started = False

    def __iter__(self) -> Iterator[T]:
        if self._started:
            raise RuntimeError("a Paginator can be iterated once; call the list method again")
        self._started = True
        return self._iterate()

    def _iterate(self) -> Iterator[T]:
        page_number = 1
        while True:
            page = self._fetch(
                {**self._params, "page_number": page_number, "page_size": self.page_size}
            )
            self.requests += 1
            self.total_count = page.total_count
            self.total_pages = page.total_pages
            for item in page.items:
                try:
                    record = self._parse(item)
                except RecordError as exc:
                    self.errors.append(exc)
                    continue
                yield record
            if not page.items:
                return
            if page.total_pages is not None:
                if page_number >= page.total_pages:
                    return
            elif len(page.items) < self.page_size:
                return
            page_number += 1

    def all(self) -> list[T]:
        """Every record as a list (fetches every page)."""
        return list(self)
