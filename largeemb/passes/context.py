"""What every distance pass needs to know, in one frozen object; the tile strategy
it gives each task, and what those strategies screened."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from largeemb.errors import InputError
from largeemb.io import onednn
from largeemb.kernels import bf16
from largeemb.kernels.distance import sqdist_error_scale
from largeemb.kernels.plan import RowBlock, row_blocks
from largeemb.kernels.prune import Partition
from largeemb.kernels.screen import FLOAT32, ScreenCounts, ScreenedTiles, TileStrategy
from largeemb.run.session import current_run
from largeemb.run.tally import note


@dataclass(frozen=True)
class PassContext:
    """Settled once the moments pass is done, then handed to every later stage.

    ``centre`` (float32, the real set's metric mean) is what all float32 work
    is centred on; ``partition`` the pruning groups (None: every tile runs in
    full); ``block_rows`` the rows each task reads, ``panel_rows`` the rows of
    one GEMM panel inside it; ``precision`` is :func:`resolve_precision` of the
    config's. ``exact``: both sets lie on a lattice whose
    float32 tiles make no rounding error (:meth:`largeemb.kernels.moments.Lattice.exact`;
    the centre is then 0): every float32 squared distance is the brute
    force's, ``kappa`` is 0, and the kernels compare tile values directly
    (ties are settled by counting equal values, never by float64 re-checks).
    """

    metric: str
    centre: np.ndarray
    k: tuple[int, ...]
    block_rows: int
    panel_rows: int
    inclusive: bool = False
    partition: Partition | None = None
    exact: bool = False
    #: "float32", "bf16" or "bf16-emulated": how screened tiles multiply first (never "auto").
    precision: str = "float32"
    #: The k whose part radii the self pass also finds, for the standard errors (:mod:`largeemb.kernels.splits`;
    #: empty: none). The config's own k.
    split_k: tuple[int, ...] = ()

    @property
    def kappa(self) -> float:
        """The float32 squared-distance error scale of this dim
        (:func:`largeemb.kernels.distance.sqdist_error_scale`), 0 when exact."""
        return 0.0 if self.exact else sqdist_error_scale(len(self.centre))

    def blocks(self, source) -> list[RowBlock]:
        """The blocks of ``block_rows`` rows a pass reads a set in (one task's share each)."""
        return row_blocks(source.rows, self.block_rows)

    def bf16_gemm(self):
        """The bf16 GEMM that screens tiles (None: float32 tiles), loaded in the calling process."""
        if self.precision == "bf16-emulated":
            return bf16.emulated
        return onednn.onednn() if self.precision == "bf16" else None

    def strategy(self, screened: bool = True) -> TileStrategy:
        """One task's tile strategy (:mod:`largeemb.kernels.screen`): screened in bf16 where the
        precision asks for it and ``screened``, else float32. Without a partition each block's rows
        are rounded to bfloat16 once; pruned tiles (mostly under ``MIN_SCREEN_ENTRIES``) round their own."""
        gemm = self.bf16_gemm() if screened else None
        return FLOAT32 if gemm is None else ScreenedTiles(gemm, round_blocks=self.partition is None)


def note_screening(strategy: TileStrategy) -> None:
    """Note, for the run, what a task's strategy screened (read back by :func:`screening`)."""
    if isinstance(strategy, ScreenedTiles):
        note(screen_entries=strategy.counts.entries, screen_rechecked=strategy.counts.rechecked)


def screening(kind: str) -> dict:
    """What the units of one kind (``radii-real``, ``cross-tile``) screened in the current run:
    entries, those recomputed in float32, and their share."""
    noted = current_run().noted
    return ScreenCounts(noted[(kind, "screen_entries")], noted[(kind, "screen_rechecked")]).as_dict()


def tile_arithmetic(asked: str, resolved: str) -> dict:
    """metrics.json's note of how tiles multiplied, and, for ``auto``, why (logged once per run)."""
    if asked != "auto":
        return {"precision": resolved}
    why = onednn.auto_choice()[1]
    logging.getLogger("largeemb").info("--precision auto: %s, as %s", resolved, why)
    return {"precision": resolved, "auto": why}


def resolve_precision(precision: str) -> str:
    """The precision tiles run at: "auto" becomes "bf16" where it pays, else "float32"."""
    if precision == "auto":
        return onednn.auto_choice()[0]
    if precision == "bf16" and onednn.onednn() is None:
        raise InputError(
            "--precision bf16 needs oneDNN, which did not load",
            "on this machine",
            "install the extra with `pip install largeemb[bf16]`, or use --precision auto (float32 here)",
        )
    return precision
