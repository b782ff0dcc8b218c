"""t-SNE of the joint subsample, for ``tsne.png``."""

from __future__ import annotations

import numpy as np

#: t-SNE starts from the PCA coordinates scaled to this standard deviation
#: (both scikit-learn and openTSNE rescale their own PCA start the same way).
TSNE_INIT_STD = 1e-4
TSNE_PERPLEXITY = 30.0


def tsne(rows: np.ndarray, init: np.ndarray, seed: int) -> np.ndarray:
    """openTSNE embedding of ``rows`` started from ``init`` (PCA coordinates), seeded.

    The start is rescaled to TSNE_INIT_STD on its first axis, as openTSNE and
    scikit-learn do with their own PCA start. Perplexity is lowered for small
    inputs, which need more than three times the perplexity in rows. It runs
    on one thread: openTSNE's result changes with its thread count, and the
    plots must not depend on how many cores a machine has.
    """
    from openTSNE import TSNE

    init = np.asarray(init, np.float64)
    spread = init[:, 0].std()
    init = init / spread * TSNE_INIT_STD if spread > 0 else np.zeros_like(init)
    perplexity = min(TSNE_PERPLEXITY, max(1.0, (len(rows) - 1) / 3.0))
    embedding = TSNE(perplexity=perplexity, initialization=init, random_state=seed, n_jobs=1).fit(
        np.ascontiguousarray(rows, dtype=np.float32)
    )
    return np.asarray(embedding, dtype=np.float64)
