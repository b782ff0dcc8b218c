"""scikit-learn's TSNE vs openTSNE on the same joint subsample, in one run.

    python scripts/bench_tsne.py [--rows 10000] [--dim 64] [--threads 1] [--out tsne-compare.png]

Takes ``--rows`` rows of a synthetic real set and of a shifted, mode-dropped
fake set (``--rows`` × 2 points in all), initialises both libraries from the
same PCA coordinates and runs each twice in a fresh process with the same
seed, on ``--threads`` threads (largeemb runs t-SNE on one: openTSNE's result
changes with its thread count). Prints wall time and peak RSS of each, whether the two runs of a library
are identical, and how alike the two libraries' pictures are: the share of
each point's 15 nearest neighbours in 2-D that the two embeddings have in
common, and the same share between each embedding and the input space.
Writes both embeddings side by side to ``--out`` to look at.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from _bench import run_child

NEIGHBOURS = 15
CHILD = """
import time, numpy as np
rows = np.load({rows!r}); init = np.load({init!r})
runs = []
for _ in range(2):
    start = time.perf_counter()
    {body}
    runs.append((time.perf_counter() - start, emb))
np.save({dst!r}, runs[0][1])
_out = {{'seconds': [s for s, _ in runs], 'identical': bool(np.array_equal(runs[0][1], runs[1][1]))}}
"""
SKLEARN = (
    "from sklearn.manifold import TSNE; "
    "emb = TSNE(init=init, random_state=0, n_jobs={jobs}).fit_transform(rows)"
)
OPENTSNE = (
    "from openTSNE import TSNE; "
    "emb = np.asarray(TSNE(initialization=init, random_state=0, n_jobs={jobs}).fit(rows))"
)


def neighbours(points: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    """Each point's k nearest other points."""
    from sklearn.neighbors import NearestNeighbors

    return NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points, return_distance=False)[:, 1:]


def shared_neighbours(na: np.ndarray, nb: np.ndarray) -> float:
    """Mean share of each point's nearest neighbours that two neighbour lists agree on."""
    return float(np.mean([len(np.intersect1d(x, y)) / na.shape[1] for x, y in zip(na, nb)]))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000, help="rows of each set")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="tsne-compare.png")
    args = parser.parse_args()

    from largeemb.io.synth import synth_rows

    real = synth_rows(0, args.rows, args.dim, 0, 0.0, 10, 0, 8192)
    fake = synth_rows(0, args.rows, args.dim, 1, 0.05, 10, 3, 8192)
    rows = np.concatenate([real, fake]).astype(np.float32)
    centred = rows[: args.rows] - rows[: args.rows].mean(axis=0)
    basis = np.linalg.eigh(np.cov(centred, rowvar=False))[1][:, ::-1][:, :2]
    init = (rows - rows[: args.rows].mean(axis=0)) @ basis
    init = (init / init[:, 0].std() * 1e-4).astype(np.float64)
    jobs = args.threads

    results, embeddings = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/rows.npy", rows)
        np.save(f"{tmp}/init.npy", init)
        for name, body in (("scikit-learn", SKLEARN), ("openTSNE", OPENTSNE)):
            dst = f"{tmp}/{name}.npy"
            code = CHILD.format(rows=f"{tmp}/rows.npy", init=f"{tmp}/init.npy", dst=dst, body=body.format(jobs=jobs))
            results[name] = run_child(code)
            embeddings[name] = np.load(dst)

    print(f"{2 * args.rows} points (real + fake), dim {args.dim}, {jobs} threads, PCA initialisation, seed 0")
    print(f"{'':14}{'run 1 s':>9}{'run 2 s':>9}{'peak MiB':>10}  identical  kNN kept from input")
    lists = {name: neighbours(emb) for name, emb in embeddings.items()}
    in_input = neighbours(rows)
    for name, res in results.items():
        kept = shared_neighbours(in_input, lists[name])
        print(
            f"{name:14}{res['seconds'][0]:9.1f}{res['seconds'][1]:9.1f}{res['peak_mib']:10.0f}  "
            f"{str(res['identical']):9}  {kept:.3f}"
        )
    sk, ot = results["scikit-learn"], results["openTSNE"]
    print(f"openTSNE speed-up: {np.median(sk['seconds']) / np.median(ot['seconds']):.1f}x (median of 2 runs each)")
    print(f"15-NN shared between the two embeddings: {shared_neighbours(lists['scikit-learn'], lists['openTSNE']):.3f}")
    _draw(embeddings, args.rows, args.out)
    print(f"wrote {args.out}")


def _draw(embeddings: dict, real_rows: int, out: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 6), dpi=110)
    for ax, (name, emb) in zip(axes, embeddings.items()):
        ax.scatter(*emb[:real_rows].T, s=2, alpha=0.4, label="real", color="tab:blue", linewidths=0)
        ax.scatter(*emb[real_rows:].T, s=2, alpha=0.4, label="fake", color="tab:orange", linewidths=0)
        ax.set_title(name)
        ax.legend(markerscale=5)
    fig.tight_layout()
    fig.savefig(out)


if __name__ == "__main__":
    main()
