"""The public entry: ``evaluate(real, fake, ...)``."""

from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np

from . import engine
from .config import EvaluateConfig
from .errors import InputError
from .moments import frechet_distance
from .result import EvaluationResult, metrics_from_memberships
from .store import Source, open_source

#: Below this many rows k-NN radii are unstable (Naeem et al. 2020).
SMALL_SET_ROWS = 1000
#: Above this dim the float64 covariance of each set takes noticeable memory.
LARGE_DIM = 4096


def evaluate(
    real,
    fake,
    config: EvaluateConfig | None = None,
    *,
    real_array: str | None = None,
    fake_array: str | None = None,
    **options,
) -> EvaluationResult:
    """Compare a fake (generated) embedding set with a real one, exactly.

    Parameters
    ----------
    real, fake
        The two sets, each a zarr path or fsspec URL (array or group), a
        zarr array, a dask array or a NumPy array of shape (rows, dim).
    config
        An :class:`EvaluateConfig`; or give its fields as keyword
        ``options`` (``k=5``, ``metric="cosine"``, ``block_rows=4096``, …).
        Unknown options are an error.
    real_array, fake_array
        Array names inside zarr groups (default: the only 2-D array, else
        ``embeddings``).

    Returns
    -------
    EvaluationResult
        ``result.metrics`` holds precision, recall, density, coverage (first
        k) and the Fréchet distance ``fd``; ``result.to_dict()`` is the
        content of ``metrics.json``.

    Raises
    ------
    InputError
        For any input that cannot be evaluated, with what, where and what to do.
    """
    if config is None:
        config = EvaluateConfig.from_dict(options)
    elif options:
        raise InputError("pass either config or keyword options", "in the evaluate() call", "not both")
    real_src = open_source(real, real_array, role="real")
    fake_src = open_source(fake, fake_array, role="fake")
    warnings = _check_pair(real_src, fake_src, config)
    timings: dict[str, float] = {}

    with _timed(timings, "moments"):
        real_check, fake_check = engine.compute(
            engine.moments_graph(real_src, config.metric), engine.moments_graph(fake_src, config.metric), workers=config.workers
        )
    real_moments = engine.checked_moments(real_check, real_src, "real", config.metric)
    fake_moments = engine.checked_moments(fake_check, fake_src, "fake", config.metric)
    centre = real_moments.metric_mean.astype(np.float32)

    with _timed(timings, "radii"):
        real_blocks, fake_blocks = engine.compute(
            engine.radii_graph(real_src, centre, config.metric, config.k, config.block_rows),
            engine.radii_graph(fake_src, centre, config.metric, config.k, config.block_rows),
            workers=config.workers,
        )
        real_radii, real_unproven = engine.collect_radii(real_blocks, real_src, centre, config.metric, config.k, config.block_rows)
        fake_radii, fake_unproven = engine.collect_radii(fake_blocks, fake_src, centre, config.metric, config.k, config.block_rows)

    with _timed(timings, "cross"):
        (memberships,) = engine.compute(
            engine.cross_graph(real_src, fake_src, centre, config.metric, real_radii, fake_radii, config.inclusive, config.block_rows),
            workers=config.workers,
        )

    with _timed(timings, "fd"):
        fd = frechet_distance(real_moments.mean, real_moments.cov, fake_moments.mean, fake_moments.cov)

    projection = None
    if config.plots:
        from .projection import project

        with _timed(timings, "projection"):
            projection = project(
                real_src, fake_src, real_moments, fake_moments, metric=config.metric, method=config.pca,
                plot_samples=config.plot_samples, tsne_samples=config.tsne_samples, seed=config.seed, workers=config.workers,
            )

    warnings += _radius_warnings(real_radii, fake_radii, config)
    by_k = metrics_from_memberships(config.k, memberships.fake_counts, memberships.real_covered, memberships.real_recalled)
    timings["total"] = sum(timings.values())
    return EvaluationResult(
        by_k=by_k,
        fd=fd,
        real={**real_src.describe(), "float64_fallback_rows": int(real_unproven)},
        fake={**fake_src.describe(), "float64_fallback_rows": int(fake_unproven)},
        params=_params(config),
        warnings=warnings,
        timings_s=timings,
        versions=_versions(),
        real_radii=real_radii,
        fake_radii=fake_radii,
        fake_counts=memberships.fake_counts,
        real_covered=memberships.real_covered,
        real_recalled=memberships.real_recalled,
        real_moments=real_moments,
        fake_moments=fake_moments,
        projection=projection,
    )


def _check_pair(real: Source, fake: Source, config: EvaluateConfig) -> list[str]:
    if real.dim != fake.dim:
        raise InputError(
            f"real and fake embeddings differ in dim ({real.dim} vs {fake.dim})",
            f"in {real.name} and {fake.name}",
            "embed both sets with the same network",
        )
    for src, role in ((real, "real"), (fake, "fake")):
        if config.max_k >= src.rows:
            raise InputError(
                f"k={config.max_k} needs more than {config.max_k} {role} rows, got {src.rows}",
                f"in {src.name}",
                "use a smaller --k or more rows",
            )
    warnings = []
    for src, role in ((real, "real"), (fake, "fake")):
        if src.rows < SMALL_SET_ROWS:
            warnings.append(f"{role} set has only {src.rows} rows: k-NN radii are unstable below ~{SMALL_SET_ROWS}")
        if src.dtype.startswith(("int", "uint")):
            warnings.append(f"{role} array has integer dtype {src.dtype}: cast to float")
    if real.dim > LARGE_DIM:
        warnings.append(f"dim {real.dim} > {LARGE_DIM}: each covariance takes {real.dim**2 * 8 / 2**20:.0f} MiB")
    return warnings


def _radius_warnings(real_radii, fake_radii, config: EvaluateConfig) -> list[str]:
    if config.inclusive:
        return []
    warnings = []
    for radii, role in ((real_radii, "real"), (fake_radii, "fake")):
        zero = int((radii[:, 0] == 0).sum())
        if zero:
            warnings.append(
                f"{zero} {role} rows have a zero k-NN radius (k={config.k[0]}) from duplicate rows; "
                "with strict '<' their balls are empty (use --inclusive for '<=')"
            )
    return warnings


def _params(config: EvaluateConfig) -> dict:
    return {
        "k": list(config.k),
        "metric": config.metric,
        "inclusive": config.inclusive,
        "block_rows": config.block_rows,
        "seed": config.seed,
        "plots": config.plots,
        "pca": config.pca,
        "plot_samples": config.plot_samples,
        "tsne_samples": config.tsne_samples,
    }


def _versions() -> dict[str, str]:
    from importlib import metadata

    names = ["largeemb", "numpy", "dask", "zarr", "faiss-cpu", "scikit-learn", "openTSNE", "matplotlib"]
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


@contextmanager
def _timed(timings: dict, name: str):
    start = time.perf_counter()
    yield
    timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
