"""Progress bars for the sync commands: one tqdm bar per entity, opened when a pass reaches it."""

from __future__ import annotations

from typing import TextIO

from tqdm import tqdm


class TerminalProgress:
    """A progress callback `(entity, done, total)`; total may be None while it is not known."""

    def __init__(self, stream: TextIO, *, label_width: int = 22):
        self._stream = stream
        self._label_width = label_width
        self._bars: dict[str, tqdm] = {}

    def __call__(self, entity: str, done: int, total: int | None) -> None:
        bar = self._bars.get(entity)
        if bar is None:
            bar = self._bars[entity] = tqdm(
                total=total,
                desc=f"{entity:<{self._label_width}}",
                unit=" rec",
                file=self._stream,
                leave=True,
            )
        if total is not None and bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
