"""The public entry: ``evaluate(real, fake, ...)``."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

import numpy as np

from . import checkpoint, engine, execution
from .config import EvaluateConfig
from .errors import InputError
from .moments import frechet_distance
from .projection import project
from .result import EvaluationResult, metrics_from_memberships
from .reference import is_reference, load_reference
from .store import Source, open_source

logger = logging.getLogger("largeemb")

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
    client=None,
    checkpoint_dir: str | None = None,
    resume: bool = False,
    **options,
) -> EvaluationResult:
    """Compare a fake (generated) embedding set with a real one, exactly.

    Parameters
    ----------
    real, fake
        The two sets, each a zarr path or fsspec URL (array or group), a
        zarr array, a dask array or a NumPy array of shape (rows, dim).
        ``real`` may also be a reference directory made by
        :func:`largeemb.build_reference`: its stored radii replace the
        real × real pass, after its fingerprint is checked against the store.
    config
        An :class:`EvaluateConfig`; or give its fields as keyword
        ``options`` (``k=5``, ``metric="cosine"``, ``block_rows=8192``, …).
        Unknown options are an error.
    real_array, fake_array
        Array names inside zarr groups (default: the only 2-D array, else
        ``embeddings``).
    client
        A ``dask.distributed.Client``: run on its cluster (wins over the
        config's ``scheduler`` and ``workers``). Workers open the stores
        themselves, so on a cluster both sets must be paths or URLs every
        worker can read; in-memory arrays are refused.
    checkpoint_dir
        Keep each finished task here (one ``.npz`` each), so that an
        interrupted run can resume. Must be visible to every worker. The
        caller removes it once the result is safe (the CLI uses ``OUT/.work``).
    resume
        Continue the unfinished work found in ``checkpoint_dir``; without it,
        unfinished work there is an error (never silently reused or lost).

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
    reference = load_reference(str(real)) if is_reference(real) else None
    real_src = reference.source if reference else open_source(real, real_array, role="real")
    fake_src = open_source(fake, fake_array, role="fake")
    warnings = _check_pair(real_src, fake_src, config)
    config = config.resolved(max(real_src.rows, fake_src.rows))
    execution.check_sources(config, client, real_src, fake_src)
    store = None
    if checkpoint_dir is not None:
        store = checkpoint.open_store(checkpoint_dir, _checkpoint_fingerprint(real_src, fake_src, config), resume)
    timings: dict[str, float] = {}
    with execution.open_run(config, client, store) as run:
        logger.debug("running %s", run.executor.describe())
        execution.check_reachable(run, (real_src, fake_src), checkpoint_dir)
        try:
            passes = _passes(real_src, fake_src, reference, config, timings)
        except InputError:
            if store is not None:  # bad data (e.g. NaN rows): nothing worth resuming
                checkpoint.discard(checkpoint_dir)
            raise
        if store is not None:
            logger.info("%s", run.summary())
        (real_moments, real_fp), (fake_moments, fake_fp) = passes["moments"]
        real_radii, real_unproven, fake_radii, fake_unproven = passes["radii"]
        memberships, per_sample = passes["cross"]

        projection = None
        if config.plots:
            with _timed(timings, "projection"):
                projection = project(
                    real_src, fake_src, real_moments, fake_moments, metric=config.metric, method=config.pca,
                    plot_samples=config.plot_samples, tsne_samples=config.tsne_samples, seed=config.seed,
                )

    with _timed(timings, "fd"):
        fd = frechet_distance(real_moments.mean, real_moments.cov, fake_moments.mean, fake_moments.cov)

    warnings += _radius_warnings(real_radii, fake_radii, config)
    by_k = metrics_from_memberships(config.k, memberships.fake_counts, memberships.real_covered, memberships.real_recalled)
    timings["total"] = sum(timings.values())
    return EvaluationResult(
        by_k=by_k,
        fd=fd,
        real={
            **real_src.describe(),
            "fingerprint": real_fp,
            "reference": reference.path if reference else None,
            "float64_fallback_rows": int(real_unproven),
        },
        fake={**fake_src.describe(), "fingerprint": fake_fp, "float64_fallback_rows": int(fake_unproven)},
        params=_params(config),
        warnings=warnings,
        timings_s=timings,
        versions=_versions(),
        real_radii=real_radii,
        fake_radii=fake_radii,
        fake_counts=memberships.fake_counts,
        real_covered=memberships.real_covered,
        real_recalled=memberships.real_recalled,
        **per_sample,
        real_moments=real_moments,
        fake_moments=fake_moments,
        projection=projection,
    )


def realism_radii(real_radii: np.ndarray) -> np.ndarray:
    """Radii of the real rows that take part in realism scores, 0 for the rest.

    Kynkäänniemi et al. (2019) drop the half of the real balls with the
    largest radii: a row takes part when its radius is not above the median.
    """
    return np.where(real_radii <= np.median(real_radii), real_radii, 0.0)


def _passes(real_src: Source, fake_src: Source, reference, config: EvaluateConfig, timings: dict) -> dict:
    """The passes over the data, on the current run's executor."""
    with _timed(timings, "moments"):
        if reference:  # stored moments; the store is only hashed, to check that it has not changed
            fake_moments, real_fp = engine.moments_stage([(fake_src, "fake")], config.metric, hashed=real_src)
            reference.check(config.metric, real_fp)
            moments = [(reference.moments(), real_fp), fake_moments]
        else:
            moments = engine.moments_stage([(real_src, "real"), (fake_src, "fake")], config.metric)
    (real_moments, real_fp), (fake_moments, fake_fp) = moments
    if reference and config.plots and config.metric != "euclidean" and real_moments.of_metric_rows() is None:
        raise InputError(
            f"reference lacks the moments of {config.metric} rows that the plots need (built by an older largeemb)",
            f"in {reference.path}",
            "rebuild it with `largeemb reference build`, or pass --no-plots",
        )
    _check_scale(real_moments, fake_moments, real_src, fake_src)
    centre = real_moments.metric_mean.astype(np.float32)
    partition = None
    if config.prune:
        with _timed(timings, "partition"):
            if reference:
                partition = reference.partition()
            else:
                partition = engine.partition_stage(real_src, real_moments, centre, config.metric, config.seed)

    with _timed(timings, "radii"):
        if reference:
            real_radii, real_unproven = reference.radii(config.k), 0
            [(fake_radii, fake_unproven)] = engine.radii_stage(
                [fake_src], centre, config.metric, config.k, config.block_rows, roles=("fake",), partition=partition,
                timings=timings,
            )
        else:
            (real_radii, real_unproven), (fake_radii, fake_unproven) = engine.radii_stage(
                [real_src, fake_src], centre, config.metric, config.k, config.block_rows, partition=partition, timings=timings
            )
    # radii_float64 (the float64 pass over unproven rows) was timed inside: "radii" is the tile pass alone
    timings["radii"] -= timings.get("radii_float64", 0.0)

    realism_radius = realism_radii(real_radii[:, 0]) if config.samples else None
    with _timed(timings, "cross"):
        memberships = engine.cross_stage(
            real_src, fake_src, centre, config.metric, real_radii, fake_radii, config.inclusive, config.block_rows,
            realism_radius, partition,
        )
    per_sample = {}
    if config.samples:
        with _timed(timings, "samples"):
            per_sample = engine.settle_stage(real_src, fake_src, centre, config.metric, memberships, realism_radius, config.block_rows)
    return {
        "moments": moments,
        "radii": (real_radii, real_unproven, fake_radii, fake_unproven),
        "cross": (memberships, per_sample),
    }


#: Options of the plots alone: no checkpointed task depends on them, so a
#: resumed run may change them.
PLOT_PARAMS = ("plots", "pca", "plot_samples", "tsne_samples")


def _checkpoint_fingerprint(real: Source, fake: Source, config: EvaluateConfig) -> dict:
    """What must match for a resumed run to reuse finished tasks (not where it runs)."""
    from . import __version__

    return {
        "real": checkpoint.quick_fingerprint(real),
        "fake": checkpoint.quick_fingerprint(fake),
        "params": {key: value for key, value in _params(config).items() if key not in PLOT_PARAMS},
        "largeemb": __version__,
    }


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


#: Below this spread, squared distances of centred rows fall out of float32's
#: normal range and its error bound no longer holds.
SMALLEST_SPREAD = 1e-15


def _check_scale(real_moments, fake_moments, real: Source, fake: Source) -> None:
    """Refuse data whose spread float32 cannot resolve (all-identical rows are fine)."""
    spread = max(
        float(np.sqrt(max(np.trace(m.cov), 0.0) / len(m.mean))) for m in (real_moments, fake_moments)
    )
    if 0.0 < spread < SMALLEST_SPREAD:
        raise InputError(
            f"embeddings vary by only ~{spread:.1e} around their mean, too little for the float32 distance tiles",
            f"in {real.name} and {fake.name}",
            "multiply both sets by the same large power of two (distances scale, metrics do not change)",
        )


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
        "samples": config.samples,
        "prune": config.prune,
        "panel_rows": engine.PANEL_ROWS,
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
