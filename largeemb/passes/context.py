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
    one GEMM panel inside it.
    """

    metric: str
    centre: np.ndarray
    k: tuple[int, ...]
    block_rows: int
    panel_rows: int
    inclusive: bool = False
    partition: Partition | None = None

    @property
    def kappa(self) -> float:
        """The float32 squared-distance error scale of this dim (:func:`largeemb.kernels.distance.sqdist_error_scale`)."""
        return sqdist_error_scale(len(self.centre))
