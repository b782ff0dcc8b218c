"""What every distance pass needs to know, in one frozen object."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from largeemb.kernels.distance import sqdist_error_scale
from largeemb.kernels.prune import Partition


@dataclass(frozen=True)
class PassContext:
    """Settled once the moments pass is done, then handed to every later stage.

    ``centre`` (float32, the real set's metric mean) is what all float32 work
    is centred on; ``partition`` the pruning groups (None: every tile runs in
    full); ``block_rows`` the rows each task reads, ``panel_rows`` the rows of
    one GEMM panel inside it. ``exact``: both sets lie on a lattice whose
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

    @property
    def kappa(self) -> float:
        """The float32 squared-distance error scale of this dim (:func:`largeemb.kernels.distance.sqdist_error_scale`), 0 when exact."""
        return 0.0 if self.exact else sqdist_error_scale(len(self.centre))
