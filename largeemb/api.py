"""The public entries: ``evaluate`` (numbers), ``evaluate_to`` (everything the
CLI writes into a directory) and ``build_reference`` (the real side, stored).

Each opens its inputs, runs the passes through :mod:`largeemb.pipeline` on the
executor the options ask for, and builds the result.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np

from largeemb.config import EvaluateConfig
from largeemb.errors import InputError
from largeemb.io.checks import check_pair
from largeemb.io.output import METRICS_FILE, result_dir
from largeemb.io.reference import REFERENCE_FILE, REFERENCE_FILES, Reference, is_reference, load_reference, write_reference
from largeemb.io.samples import SAMPLES_STORE, write_samples
from largeemb.io.store import Source, open_source
from largeemb.kernels.companions import fd_infinity, kid_from_row_sums, prob_score, vendi_score, vendi_score_of_rows
from largeemb.kernels.highdim import few_rows, frechet_distance_of_rows
from largeemb.kernels.moments import frechet_distance, frechet_distance_few_rows
from largeemb.passes.projection import project
from largeemb.pipeline import Passes, float64_work, run_passes, timed
from largeemb.report.stage import PLOT_FILES, write_plots
from largeemb.result import EvaluationResult, authentic, metrics_from_memberships, radius_warnings
from largeemb.run import checkpoint
from largeemb.run.progress import announce_long_step, cubic_seconds
from largeemb.run.session import check_reachable, check_sources, open_run
from largeemb.run.threads import one_blas_thread

logger = logging.getLogger("largeemb")

#: Every name an evaluate run may publish into its directory; a previous run's
#: files by these names are the result that needs ``force`` to be replaced.
RESULT_FILES = (METRICS_FILE, SAMPLES_STORE, *PLOT_FILES)


def _config_of(config: EvaluateConfig | None, options: dict, where: str) -> EvaluateConfig:
    if config is None:
        return EvaluateConfig.from_dict(options)
    if options:
        raise InputError("pass either config or keyword options", f"in the {where}() call", "not both")
    return config


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
        caller removes it once the result is safe (:func:`evaluate_to` uses ``OUT/.work``).
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
    config = _config_of(config, options, "evaluate")
    reference = load_reference(str(real)) if is_reference(real) else None
    real_src = reference.source if reference else open_source(real, real_array, role="real")
    fake_src = open_source(fake, fake_array, role="fake")
    warnings = check_pair(real_src, fake_src, config.max_k)
    if config.kid_subsets and config.kid_subset_size > min(real_src.rows, fake_src.rows):
        raise InputError(
            f"KID subsets of {config.kid_subset_size} rows need at least that many rows in each set",
            f"in {real_src.name} ({real_src.rows} rows) and {fake_src.name} ({fake_src.rows} rows)",
            "pass a smaller --kid-subset-size",
        )
    config = config.resolved(max(real_src.rows, fake_src.rows))
    check_sources(config, client, real_src, fake_src)
    store = None
    if checkpoint_dir is not None:
        store = checkpoint.open_store(checkpoint_dir, checkpoint.run_fingerprint(real_src, fake_src, config.result_params()), resume)
    with checkpoint.kept_only_if_worth_it(checkpoint_dir), open_run(config, client, store) as run:
        logger.debug("running %s", run.executor.describe())
        check_reachable(run, (real_src, fake_src), checkpoint_dir)
        passes = run_passes(real_src, fake_src, config, reference)
        if store is not None:
            logger.info("%s", run.summary())
        timings = passes.timings
        projection = None
        if config.plots:
            with timed(timings, "projection"):
                projection = project(
                    real_src, fake_src, passes.real.moments, passes.fake.moments, metric=config.metric, method=config.pca,
                    plot_samples=config.plot_samples, tsne_samples=config.tsne_samples, seed=config.seed,
                )

    real_side, fake_side, memberships = passes.real, passes.fake, passes.memberships
    with timed(timings, "fd"):
        fd = _frechet(real_src, fake_src, real_side.moments, fake_side.moments)
    warnings += radius_warnings(real_side.radii.values, fake_side.radii.values, config.k, config.inclusive)
    with timed(timings, "companions"):
        companions, details, fake_authentic = _companions(config, passes, warnings, (real_src, fake_src))
    details["screening"] = passes.screening
    timings["total"] = sum(timings.values())
    per_sample = passes.per_sample
    return EvaluationResult(
        by_k=metrics_from_memberships(
            config.k, memberships.fake_counts, memberships.real_covered, memberships.real_recalled, "fscore" in config.companions
        ),
        fd=fd,
        real={
            **real_src.describe(),
            "fingerprint": real_side.fingerprint,
            "reference": reference.path if reference else None,
            "float64_fallback_rows": int(real_side.radii.float64_rows),
        },
        fake={**fake_src.describe(), "fingerprint": fake_side.fingerprint, "float64_fallback_rows": int(fake_side.radii.float64_rows)},
        params=config.params(),
        warnings=warnings,
        timings_s=timings,
        float64=float64_work(passes),
        versions=_versions(),
        real_radii=real_side.radii.values,
        fake_radii=fake_side.radii.values,
        fake_counts=memberships.fake_counts,
        real_covered=memberships.real_covered,
        real_recalled=memberships.real_recalled,
        fake_nearest_dist=per_sample.fake_nearest_dist if per_sample else None,
        fake_nearest_real=per_sample.fake_nearest_real if per_sample else None,
        fake_realism=per_sample.fake_realism if per_sample else None,
        real_nearest_dist=per_sample.real_nearest_dist if per_sample else None,
        fake_authentic=fake_authentic,
        companions=companions,
        details=details,
        real_moments=real_side.moments,
        fake_moments=fake_side.moments,
        projection=projection,
    )


def _companions(config: EvaluateConfig, passes: Passes, warnings: list[str], sources: tuple[Source, Source]):
    """The companion metrics that do not depend on k: (metrics by name, details, per-fake authenticity flags)."""
    metrics, details, flags = {}, {}, None
    real, fake = passes.real.moments, passes.fake.moments
    dim = len(real.mean)
    if "fd_infinity" in config.companions and real.count <= dim:
        # A real covariance of rank < dim has no cheap factor: 15 FDs would each cost O(dim³).
        warnings.append(f"FD∞ not computed: the real set has {real.count} rows for dim {dim} (it needs more rows than dims)")
    elif "fd_infinity" in config.companions:
        nested = fake.nested()
        # A Cholesky factor, then each point's products and eigenvalues, two points at a time.
        announce_long_step(f"FD∞, {len(nested)} eigenproblems of dim {dim:,} (--companions without fd_infinity skips it)",
                           cubic_seconds(dim, 1 + len(nested)))
        with one_blas_thread():  # for the whole pool of two eigenproblems at a time
            metrics["fd_infinity"], sizes, fds = fd_infinity(real.mean, real.cov, nested)
        details["fd_infinity"] = {"subsample_rows": sizes, "fd": fds}
    if "authenticity" in config.companions and passes.per_sample is not None:  # it needs each fake row's nearest real row
        if passes.real_nearest_other is None:
            warnings.append("authenticity not computed: the reference holds no k=1 radii (rebuild it with this largeemb)")
        else:
            ps = passes.per_sample
            flags = authentic(passes.real_nearest_other, ps.fake_nearest_real, ps.fake_nearest_dist)
            metrics["authenticity"] = float(np.mean(flags))
    if "vendi" in config.companions:
        for role, moments, src in (("real", real, sources[0]), ("fake", fake, sources[1])):
            if few_rows(src.rows, src.dim):  # the n × n kernel matrix: O(n²·dim), not O(dim³)
                metrics[f"vendi_{role}"] = vendi_score_of_rows(src.read(0, src.rows), one_blas_thread()(vendi_score))
                continue
            unit = moments.unit_moment()
            if unit is None:
                warnings.append(f"vendi_{role} not computed: the reference was built by an older largeemb (rebuild it)")
                continue
            announce_long_step(f"vendi_{role}, an eigenproblem of dim {dim:,} (--companions without vendi skips it)", cubic_seconds(dim))
            with one_blas_thread():
                metrics[f"vendi_{role}"] = vendi_score(unit, moments.count)
    if "p_precision_recall" in config.companions:
        prob = passes.memberships.prob
        if prob is None:
            warnings.append("P-precision/recall not computed: the reference holds no k=4 radii (rebuild it with this largeemb)")
        else:
            metrics["p_precision"] = prob_score(prob.fake_log, prob.fake_zero)
            metrics["p_recall"] = prob_score(prob.real_log, prob.real_zero)
            details["p_precision_recall"] = {"real_radius": passes.prob_radii[0], "fake_radius": passes.prob_radii[1]}
    if passes.kid is not None:
        s = passes.kid
        metrics["kid"], details["kid_se"] = kid_from_row_sums(s.real_self, s.real_cross, s.fake_self, s.fake_cross)
    if passes.kid_subsets is not None:
        metrics["kid_subsets_mean"] = float(np.mean(passes.kid_subsets))
        metrics["kid_subsets_std"] = float(np.std(passes.kid_subsets))
        details["kid_subsets"] = {"subsets": config.kid_subsets, "rows": config.kid_subset_size, "seed": config.kid_subset_seed}
    return metrics, details, flags


def evaluate_to(
    real,
    fake,
    out: str,
    config: EvaluateConfig | None = None,
    *,
    real_array: str | None = None,
    fake_array: str | None = None,
    force: bool = False,
    resume: bool = False,
    client=None,
    on_metrics=None,
    **options,
) -> EvaluationResult:
    """Evaluate and write the whole result into directory ``out``, exactly as ``largeemb evaluate`` does.

    Writes ``metrics.json`` and, as the config asks, ``samples.zarr``,
    ``projection.npz`` and the figures. Finished tasks are kept in
    ``out/.work`` while it runs (``resume`` continues from them) and removed
    once the result is published. ``out`` is claimed with a lock; the result
    is staged and published only when everything succeeded, so ``out`` holds
    the previous result or the new one, never a mix. An existing result is
    replaced only with ``force``. ``on_metrics(result)`` is called as soon
    as the numbers exist, before per-sample values and plots are written (the
    CLI prints them then); nothing is published before everything is written.
    Other parameters as for :func:`evaluate`.
    """
    config = _config_of(config, options, "evaluate_to")
    work = os.path.join(out, checkpoint.WORK_DIR)
    # Claims --out (refusing early), and publishes only if everything below succeeds.
    inputs = [real, fake, *_reference_source(real)]
    with result_dir(out, force, RESULT_FILES, inputs=_paths(inputs), also_replaced=(checkpoint.WORK_DIR,)) as staging:
        if force and not resume:
            checkpoint.discard(work)
        result = evaluate(
            real, fake, config, real_array=real_array, fake_array=fake_array, client=client, checkpoint_dir=work, resume=resume
        )
        if on_metrics is not None:
            on_metrics(result)
        if config.samples:
            write_samples(result, staging.file(SAMPLES_STORE))
        if config.plots:
            try:
                write_plots(result, staging.path)
            except Exception as exc:  # a figure must never cost the metrics of a long run
                result.warnings.append(f"plots failed ({type(exc).__name__}: {exc}); metrics.json is complete")
        staging.write_json(METRICS_FILE, result.to_dict())
    checkpoint.discard(work)
    return result


def finished_run(out: str) -> str | None:
    """The result file of a run in ``out`` that finished (published, no unfinished work left), else None."""
    metrics = os.path.join(out, METRICS_FILE)
    unfinished = os.path.exists(os.path.join(out, checkpoint.WORK_DIR, checkpoint.MANIFEST))
    return metrics if os.path.isfile(metrics) and not unfinished else None


def build_reference(
    real,
    out: str,
    k=(3, 5, 10),
    *,
    real_array: str | None = None,
    force: bool = False,
    resume: bool = False,
    client=None,
    **options,
) -> Reference:
    """Compute and store the real set's radii (for each k), moments and fingerprint.

    Parameters
    ----------
    real
        Path or fsspec URL of the real zarr array or group (stored by location,
        so it must stay where it is).
    out
        Directory for the reference; refused if it already holds one, unless
        ``force``, and checked writable before any work. The reference is
        built in staging and published whole (a failed build leaves ``out``
        as it was, and removes it if it created it).
    k
        Neighbour counts to store radii for; ``evaluate`` from this reference
        accepts any of them.
    resume
        Continue an interrupted build from the finished tasks kept in ``out/.work``.
    real_array, client, options
        As for :func:`evaluate` (``metric``, ``block_rows``, ``prune``,
        ``workers``, ``scheduler``, ``threads_per_worker``, …).

    Returns
    -------
    Reference
    """
    config = EvaluateConfig.from_dict({"k": k, **options})
    if not isinstance(real, (str, os.PathLike)):
        raise InputError("a reference needs a real store it can find again", "in build_reference()", "pass a zarr path or URL")
    # Claims --out first (refusing an unwritable or taken one before any work);
    # everything is built in staging and published only whole.
    work = os.path.join(out, checkpoint.WORK_DIR)
    with result_dir(out, force, REFERENCE_FILES, inputs=_paths([real])) as staging:
        source: Source = open_source(real, real_array, role="real")
        config = config.resolved(source.rows)
        check_sources(config, client, source)
        if force and not resume:
            checkpoint.discard(work)
        store = checkpoint.open_store(work, checkpoint.run_fingerprint(source, None, config.result_params()), resume)
        with checkpoint.kept_only_if_worth_it(work), open_run(config, client, store) as run:
            check_reachable(run, (source,), work)
            passes = run_passes(source, None, config)
            logger.info("%s", run.summary())
        side = passes.real
        write_reference(
            staging, source, passes.context.k, config.metric, side.moments, side.fingerprint, side.radii.values, passes.context.partition
        )
    checkpoint.discard(work)
    return load_reference(out)


def _frechet(real_src: Source, fake_src: Source, real, fake) -> float:
    """FD; through the rows of sets with fewer rows than dimensions (both: O(n·m·dim); the smaller: O(n·dim²); not O(dim³))."""
    small, other = min([(fake_src, real), (real_src, fake)], key=lambda pair: pair[0].rows)
    if few_rows(real_src.rows, real_src.dim) and few_rows(fake_src.rows, fake_src.dim):  # O(n·m·dim)
        return frechet_distance_of_rows(real_src.read(0, real_src.rows), fake_src.read(0, fake_src.rows))
    if few_rows(small.rows, small.dim):
        return frechet_distance_few_rows(other.mean, other.cov, small.read(0, small.rows))
    # A Cholesky factor, two dim × dim products and the eigenvalues: about two eigenproblems' time.
    announce_long_step(f"FD, eigenproblems of dim {real_src.dim:,}", cubic_seconds(real_src.dim, 2))
    with one_blas_thread():
        return frechet_distance(real.mean, real.cov, fake.mean, fake.cov)


def _paths(inputs) -> list[str]:
    """The inputs given as local paths (URLs and in-memory arrays cannot overlap --out)."""
    return [str(obj) for obj in inputs if isinstance(obj, (str, os.PathLike)) and "://" not in str(obj)]


def _reference_source(real) -> list[str]:
    """The store behind a reference directory, read leniently (a damaged reference is refused later, with its reason)."""
    if not is_reference(real):
        return []
    try:
        with open(os.path.join(str(real), REFERENCE_FILE)) as fh:
            return [json.load(fh)["source"]["location"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


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
