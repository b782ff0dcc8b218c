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


#: Why ``auto`` stays float32 with the standard errors on (their part radii), on a CPU where it would screen.
WITH_PART_RADII = (
    "standard errors on: the self pass lists 8k + 24 neighbours a row for their part radii, and cuts "
    "that loose send most bf16 tiles back to float32 (the default command ran 7-12% faster in float32)"
)


def auto_choice(split_k: tuple = ()) -> tuple[str, str]:
    """What ``auto`` becomes for a run with these part-radius k (empty: no standard errors), and why:
    bf16 where it pays (:func:`largeemb.io.onednn.auto_choice`), but not with part radii to list
    (``scripts/bench_vs_prdc.py --cli --precision float32,auto``: on machine D the radii pass
    re-checked 13% of its screened entries in float32 and ran slower than float32 alone)."""
    choice = onednn.auto_choice()
    return ("float32", WITH_PART_RADII) if choice[0] == "bf16" and split_k else choice


def tile_arithmetic(asked: str, resolved: str, split_k: tuple = ()) -> dict:
    """metrics.json's note of how tiles multiplied, and, for ``auto``, why (logged once per run)."""
    if asked != "auto":
        return {"precision": resolved}
    why = auto_choice(split_k)[1]
    logging.getLogger("largeemb").info("--precision auto: %s, as %s", resolved, why)
    return {"precision": resolved, "auto": why}


def resolve_precision(precision: str, split_k: tuple = ()) -> str:
    """The precision tiles run at: "auto" becomes "bf16" where it pays (:func:`auto_choice`), else "float32"."""
    if precision == "auto":
        return auto_choice(split_k)[0]
    if precision == "bf16" and onednn.onednn() is None:
        raise InputError(
            "--precision bf16 needs oneDNN, which did not load",
            "on this machine",
            "install the extra with `pip install largeemb[bf16]`, or use --precision auto (float32 here)",
        )
    return precision
