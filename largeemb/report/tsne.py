"""t-SNE of the joint subsample, for ``tsne.png``.

Settings were chosen by measurement on the demo data (BENCHMARKS.md, t-SNE settings; the
dropped-modes test in tests/test_plots.py keeps the picture): exact neighbours from
faiss instead of openTSNE's Annoy index (faster and deterministic),
Barnes-Hut gradients (cheaper than FFT interpolation below ~10,000 points),
and fewer iterations than openTSNE's 250 + 500, which left every dropped
mode of the demo a real-only cluster.
"""

from __future__ import annotations

import numpy as np

#: t-SNE starts from the PCA coordinates scaled to this standard deviation
#: (both scikit-learn and openTSNE rescale their own PCA start the same way).
TSNE_INIT_STD = 1e-4
TSNE_PERPLEXITY = 30.0
#: Iterations of the early-exaggeration phase and of the final phase.
EARLY_EXAGGERATION_ITER = 125
FINAL_ITER = 250
#: openTSNE's defaults for the two phases.
EARLY_EXAGGERATION, EARLY_MOMENTUM, FINAL_MOMENTUM = 12.0, 0.5, 0.8
#: Iterations between progress updates.
REPORT_EVERY = 25


def _affinities(rows: np.ndarray, perplexity: float):
    """Perplexity-based affinities from the exact 3·perplexity nearest neighbours (faiss, one thread)."""
    import faiss
    from openTSNE.affinity import PerplexityBasedNN
    from openTSNE.nearest_neighbors import PrecomputedNeighbors

    k = min(len(rows) - 1, int(3 * perplexity))
    index = faiss.IndexFlatL2(rows.shape[1])
    index.add(rows)
    sqdist, neighbours = index.search(rows, k + 1)
    # Drop each point itself (first, or tied at distance 0 with a duplicate: then drop that position's row instead).
    own = neighbours == np.arange(len(rows))[:, None]
    keep = ~own
    keep[~own.any(axis=1), -1] = False
    neighbours = neighbours[keep].reshape(len(rows), k)
    dist = np.sqrt(np.maximum(sqdist[keep].reshape(len(rows), k), 0.0))
    return PerplexityBasedNN(perplexity=perplexity, knn_index=PrecomputedNeighbors(neighbours, dist), n_jobs=1)


def tsne(rows: np.ndarray, init: np.ndarray, seed: int, progress=None) -> np.ndarray:
    """openTSNE embedding of ``rows`` started from ``init`` (PCA coordinates), seeded.

    The start is rescaled to TSNE_INIT_STD on its first axis, as openTSNE and
    scikit-learn do with their own PCA start. Perplexity is lowered for small
    inputs, which need more than three times the perplexity in rows. It runs
    on one thread: openTSNE's result changes with its thread count, and the
    plots must not depend on how many cores a machine has. ``progress`` (a
    :class:`largeemb.run.progress.Progress` of :func:`iterations` steps) is
    advanced as the optimisation runs.
    """
    from openTSNE import TSNEEmbedding

    rows = np.ascontiguousarray(rows, dtype=np.float32)
    init = np.asarray(init, np.float64)
    spread = init[:, 0].std()
    init = init / spread * TSNE_INIT_STD if spread > 0 else np.zeros_like(init)
    perplexity = min(TSNE_PERPLEXITY, max(1.0, (len(rows) - 1) / 3.0))
    callbacks = []
    if progress is not None:

        def advanced(*_):
            progress.advance(REPORT_EVERY)
            return False  # never stop early

        callbacks = [advanced]
    embedding = TSNEEmbedding(
        init, _affinities(rows, perplexity), n_jobs=1, random_state=seed, negative_gradient_method="bh",
        callbacks=callbacks, callbacks_every_iters=REPORT_EVERY,
    )
    embedding = embedding.optimize(EARLY_EXAGGERATION_ITER, exaggeration=EARLY_EXAGGERATION, momentum=EARLY_MOMENTUM)
    embedding = embedding.optimize(FINAL_ITER, momentum=FINAL_MOMENTUM)
    return np.asarray(embedding, dtype=np.float64)


def iterations() -> int:
    return EARLY_EXAGGERATION_ITER + FINAL_ITER
