"""Block pairs cut into tiles: plain panels, or groups that meet only the rows that matter.

A tile is one GEMM operand of each block. Without pruning the blocks are cut
into panels and every panel meets every panel. With a partition
(:mod:`largeemb.kernels.prune`) each block is cut into groups, and each group of one
block gets one tile with the rows of the other block that its bounds cannot
rule out (:func:`tile_rows`); the passes (:mod:`largeemb.kernels.knn`,
:mod:`largeemb.kernels.cross`) say which rows those are.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from largeemb.kernels.distance import Block, Gathered
from largeemb.kernels.prune import MIN_SKIPPED, Groups, Partition

#: The fixed cost of one more tile (the NumPy calls around its GEMM: about a millisecond), in row pairs
#: times (dim + PAIR_DIMS), the work of one pair: its GEMM share plus what is done with its entry
#: (chosen with scripts/bench_tiles.py). Grouping pays only where it skips more than its tiles cost.
TILE_COST = 1e7
PAIR_DIMS = 64
#: The same with per-sample values: each tile also takes every row's and column's nearest and best
#: ratio among its own entries, and those lists are merged after (about 3 ms a tile at dim 64, where
#: grouping 47% of the pairs was 1.7 times slower than plain panels: scripts/bench_tiles.py).
SAMPLES_TILE_COST = 5e7


@dataclass(frozen=True)
class Cut:
    """A block cut into parts: plain panels, or groups with bounds."""

    rows: list[np.ndarray]  # block-local rows of each part, ascending
    groups: Groups | None = None  # None for panels: no bounds, nothing is skipped

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def block_rows(self) -> int:
        return sum(map(len, self.rows))

    def row_bounds(self, other: Cut) -> np.ndarray:
        """(block rows, other parts): bounds on the distances from each row to each part (0 for panels)."""
        if self.groups is None or other.groups is None:
            return np.zeros((self.block_rows, len(other)))
        return self.groups.row_bounds(other.groups)

    def maxima(self, values: np.ndarray) -> np.ndarray:
        """Per part, the largest of a per-row value."""
        return np.array([values[rows].max() for rows in self.rows])

    def labels(self) -> np.ndarray:
        """Each block row's part."""
        out = np.empty(self.block_rows, np.int64)
        for part, rows in enumerate(self.rows):
            out[rows] = part
        return out


@dataclass(frozen=True)
class Pairing:
    """Two blocks cut into parts, and which rows of each part meet each part of the other.

    ``far_a[x, j]`` bounds the distance from row x of a to every row of part
    j of b from below (0 for panels); ``need_a[x, j]`` is False when row x
    provably has no pair with part j that matters. Each part of a gets one
    tile with the rows of b that meet it (:func:`tile_rows`), cut into
    pieces of at most ``panel_rows`` rows of b.
    """

    a: Cut
    b: Cut
    far_a: np.ndarray  # (rows of a, parts of b)
    far_b: np.ndarray  # (rows of b, parts of a)
    need_a: np.ndarray
    need_b: np.ndarray
    panel_rows: int

    @classmethod
    def of(cls, a: Cut, b: Cut, needed, panel_rows: int) -> Pairing:
        """``needed(a, b, far_a, far_b)`` gives (need_a, need_b)."""
        far_a = a.row_bounds(b)
        far_b = far_a if b is a else b.row_bounds(a)
        return cls(a, b, far_a, far_b, *needed(a, b, far_a, far_b), panel_rows)

    @classmethod
    def panels(cls, a: Cut, b: Cut, panel_rows: int) -> Pairing:
        """Every row meets every part: nothing is skipped."""
        ones = np.ones((a.block_rows, len(b)), bool), np.ones((b.block_rows, len(a)), bool)
        return cls(a, b, np.zeros(ones[0].shape), np.zeros(ones[1].shape), *ones, panel_rows)

    def tiles(self, upper: bool = False) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(part i of a, its rows, rows of b) of every tile, each with at most ``panel_rows`` rows of b.

        ``upper``: a and b are one block cut once, and part i meets only the
        parts after it (the symmetric half).
        """
        label = self.b.labels()
        out = []
        for i, rows in enumerate(self.a.rows):
            later = np.arange(len(self.b)) > i if upper else None
            rows_a, rows_b = tile_rows(rows, self.need_a[rows], self.need_b[:, i], label, later)
            out += [(i, rows_a, piece) for piece in self.pieces(rows_b)] if len(rows_a) else []
        return out

    def pieces(self, rows_b: np.ndarray) -> list[np.ndarray]:
        """Rows of b cut into GEMM operands of at most ``panel_rows`` rows."""
        return [rows_b[lo : lo + self.panel_rows] for lo in range(0, len(rows_b), self.panel_rows)]


def tile_rows(
    rows: np.ndarray, need: np.ndarray, need_b: np.ndarray, label_b: np.ndarray, among=None
) -> tuple[np.ndarray, np.ndarray]:
    """The rows of one part of block a, and of block b, that the part's tile runs on.

    ``need``: (rows of the part, parts of b), which row may meet which part;
    ``need_b``: (rows of b,), which row of b may meet the part; ``label_b``:
    each row's part of b; ``among``: the parts of b allowed (None: all). A
    row of the part joins when it meets a part of b that has a row meeting
    the part; a row of b joins when it meets the part and some row of the
    part meets its own part. So every meeting pair is in the tile; so may be
    a few that do not meet, and computing them changes nothing.
    """
    parts_b = need.shape[1]
    has_b = np.bincount(label_b[need_b], minlength=parts_b) > 0
    if among is not None:
        has_b &= among
    met = need & has_b[None, :]
    return rows[met.any(axis=1)], np.flatnonzero(need_b & met.any(axis=0)[label_b])


def tiled_share(tiles, total: float) -> float:
    """Share of ``total`` row pairs that ``tiles`` compute."""
    return sum(len(a) * len(b) for _, a, b in tiles) / total if total else 1.0


def groups_pay(tiles, total: float, dim: int, extra_tiles: int, tile_cost: float | None = None) -> bool:
    """Whether grouped ``tiles`` beat plain panels, which compute all ``total`` row pairs in
    ``extra_tiles`` fewer tiles, each of ``tile_cost`` (default TILE_COST).

    They must leave out MIN_SKIPPED of the pairs, and the work left out must
    outweigh the fixed cost of the tiles they add: small blocks cut into many
    small groups would otherwise spend more on tiles than they skip.
    """
    skipped = total * (1 - tiled_share(tiles, total))
    tile_cost = TILE_COST if tile_cost is None else tile_cost
    return skipped >= MIN_SKIPPED * total and skipped * (dim + PAIR_DIMS) >= tile_cost * extra_tiles


def panel_count(rows: int, panel_rows: int) -> int:
    """How many panels :func:`panels` cuts ``rows`` rows into."""
    return -(-rows // panel_rows)


def panels(block: Block, panel_rows: int) -> Cut:
    return Cut([np.arange(lo, min(lo + panel_rows, block.rows)) for lo in range(0, block.rows, panel_rows)])


def grouped(block: Block, panel_rows: int, partition: Partition) -> Cut:
    groups = partition.groups(block, panel_rows)
    return Cut(groups.index, groups)


def cut_pair(
    a: Block, b: Block, panel_rows: int, partition: Partition | None, needed, samples: bool = False
) -> tuple[Pairing, list]:
    """Both blocks cut for tiles, and the tiles (see :class:`Pairing`).

    With a partition, both are cut into groups and ``needed`` decides which
    rows meet. The groups are used when they pay (:func:`groups_pay`, each tile
    costing SAMPLES_TILE_COST where the tiles take per-sample values); else the
    blocks are cut into panels whose tiles cover every pair.
    """
    if partition is not None:
        pairing = Pairing.of(grouped(a, panel_rows, partition), grouped(b, panel_rows, partition), needed, panel_rows)
        tiles = pairing.tiles()
        plain_tiles = panel_count(a.rows, panel_rows) * panel_count(b.rows, panel_rows)
        tile_cost = SAMPLES_TILE_COST if samples else TILE_COST
        if groups_pay(tiles, a.rows * b.rows, a.dim, len(tiles) - plain_tiles, tile_cost):
            return pairing, tiles
    pairing = Pairing.panels(panels(a, panel_rows), panels(b, panel_rows), panel_rows)
    return pairing, pairing.tiles()


def taken(block: Block, rows: np.ndarray) -> Block:
    """Ascending block-local rows as a Block of their own, with start 0.

    A contiguous run is a view; other rows are gathered (the stored rows
    only when read).
    """
    if rows[-1] - rows[0] + 1 == len(rows):
        return replace(block.panel(int(rows[0]), int(rows[-1]) + 1), start=0)
    raw = None if block.raw is None else Gathered(block.raw, rows)
    return Block(0, raw, block.metric, block.left[rows], block.sqnorm[rows])


def parted(block: Block, tiles):
    """``tiles`` of block a, each with its part of ``block`` (a) taken once: (i, part, rows of a, rows of b)."""
    current = None
    for i, rows_a, rows_b in tiles:
        if current != i:
            current, part = i, taken(block, rows_a)
        yield i, part, rows_a, rows_b


def taken_rows(array, rows: np.ndarray):
    """``array[rows]`` for ascending rows (an array, or anything indexed alike): a view when they are a
    contiguous run."""
    if rows[-1] - rows[0] + 1 == len(rows):
        return array[rows[0] : rows[-1] + 1]
    return array[rows]
