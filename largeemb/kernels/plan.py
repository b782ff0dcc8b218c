"""Pure planning: row blocks and tiles. Shapes in, plans out; no I/O."""

from __future__ import annotations

from dataclasses import dataclass

#: Rows per segment of the moments pass. Fixed, so float64 sums are added in
#: the same order whatever block size the distance passes use.
MOMENT_ROWS = 4096


@dataclass(frozen=True)
class RowBlock:
    index: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


def row_blocks(rows: int, block_rows: int) -> list[RowBlock]:
    """Split ``rows`` into blocks of ``block_rows``.

    A trailing block shorter than half a block is folded into the one before,
    so every block holds enough rows to give a useful first k-NN bound.
    """
    bounds = list(range(0, rows, block_rows)) + [rows]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < block_rows // 2:
        del bounds[-2]
    return [RowBlock(i, a, b) for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]


def segments(rows: int) -> list[RowBlock]:
    """Fixed row segments for the moments pass (independent of any option)."""
    bounds = list(range(0, rows, MOMENT_ROWS)) + [rows]
    return [RowBlock(i, a, b) for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]


def bands(n_blocks: int) -> list[list[tuple[int, int]]]:
    """Upper-triangle tile pairs of a self pass, in rounds: round r holds (a, a + r).

    Within a round every block appears at most twice, so the tiles of a round
    run in parallel and each block's state is merged once per round.
    """
    return [[(a, a + r) for a in range(n_blocks - r)] for r in range(1, n_blocks)]


def tree(items: list, combine):
    """Combine ``items`` pairwise in a fixed binary tree (deterministic order)."""
    while len(items) > 1:
        pairs = [combine(items[i], items[i + 1]) for i in range(0, len(items) - 1, 2)]
        items = pairs + ([items[-1]] if len(items) % 2 else [])
    return items[0]
