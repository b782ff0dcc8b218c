"""The public entries: ``evaluate`` (numbers), ``evaluate_to`` (everything the
CLI writes into a directory) and ``build_reference`` (the real side, stored).

Each opens its inputs, runs the passes through :mod:`largeemb.pipeline` on the
executor the options ask for, and builds the result.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import uuid
import warnings as python_warnings

from largeemb import by_class, metrics
from largeemb.config import EvaluateConfig
from largeemb.errors import InputError, LargeembWarning
from largeemb.io.checks import check_pair
from largeemb.io.objectstore import exists_at, is_remote, published_remotely
from largeemb.io.output import METRICS_FILE, result_dir
from largeemb.io.reference import (
    REFERENCE_FILE,
    REFERENCE_FILES,
    Reference,
    is_reference,
    load_reference,
    write_reference,
)
from largeemb.io.samples import SAMPLES_STORE, write_samples
from largeemb.io.store import Source, open_source
from largeemb.pipeline import KnownReal, run_passes, timed
from largeemb.report.page import REPORT_FILE, write_report
from largeemb.report.stage import PLOT_FILES, write_plots
from largeemb.result import EvaluationResult
from largeemb.run import checkpoint
from largeemb.run.session import check_reachable, check_sources, one_executor, open_run

logger = logging.getLogger("largeemb")

#: Every name an evaluate run may publish into its directory; a previous run's
#: files by these names are the result that needs ``force`` to be replaced.
RESULT_FILES = (METRICS_FILE, SAMPLES_STORE, *PLOT_FILES, REPORT_FILE)


def config_of(config: EvaluateConfig | None, options: dict, where: str) -> EvaluateConfig:
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
    real_labels=None,
    fake_labels=None,
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
    real_labels, fake_labels
        Per-class evaluation (both or neither): each set's class per row, as a
        NumPy array, a ``.npy`` path, the name of an array in the set's zarr
        group, or one integer for every row. Adds ``by_class`` and
        ``class_averaged`` (see :mod:`largeemb.by_class`).
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
    config = config_of(config, options, "evaluate")
    known = real if isinstance(real, KnownReal) else None  # the real side of an earlier run (several fakes)
    reference = load_reference(str(real)) if known is None and is_reference(real) else None
    real_src = known.source if known else reference.source if reference else open_source(real, real_array, role="real")
    if is_reference(fake):
        raise InputError(
            "is a largeemb reference (a real set's radii), not fake embeddings", f"given as FAKE: {fake}",
            "pass the reference first, as REAL: largeemb evaluate REF FAKE",
        )
    fake_src = open_source(fake, fake_array, role="fake")
    warnings = check_pair(real_src, fake_src, config.max_k)
    classes = by_class.plan(real_labels, fake_labels, real_src, fake_src, config.max_k)  # refused before any work
    if classes is not None:
        by_class.check_split_reachable(config, client, checkpoint_dir)
    given = config
    # refuses what a metric cannot do with these inputs, before any work
    needs = metrics.needs_of(config, real_src, fake_src)
    config = config.resolved(max(real_src.rows, fake_src.rows))
    check_sources(config, client, real_src, fake_src)
    # Per-class: the whole sets and every class on one executor (one LocalCluster or set of worker jobs, not one each).
    with one_executor(config, client) if classes is not None else contextlib.nullcontext():
        store = None
        if checkpoint_dir is not None:
            store = checkpoint.open_store(
                checkpoint_dir, checkpoint.run_fingerprint(real_src, fake_src, config.result_params()), resume
            )
        with checkpoint.kept_only_if_worth_it(checkpoint_dir), open_run(config, client, store) as run:
            logger.debug("running %s", run.executor.describe())
            check_reachable(run, (real_src, fake_src), checkpoint_dir)
            passes = run_passes(real_src, fake_src, config, reference, needs, known)
            if store is not None:
                logger.info("%s", run.summary())

        if passes.real.fingerprint == passes.fake.fingerprint:
            warnings.append(
                "the fake set has the same content as the real set (equal fingerprints): every metric compares a set "
                "with itself; check the inputs"
            )
        found, values = passes.found(), []
        for metric in metrics.chosen(config):
            with timed(passes.timings, metric.TIMING):
                values.append(metric.value(found, config))
        result = EvaluationResult.of(passes, values, config, warnings)
        if classes is not None:
            result.classes, lines, timings = by_class.evaluate_classes(
                evaluate, classes, real_src, fake_src, given, checkpoint_dir=checkpoint_dir, client=client,
                resume=resume,
            )
            result.warnings += lines
            result.add_timings(timings)
    for line in result.warnings:  # where a notebook or script sees them; the CLI prints its own lines instead
        python_warnings.warn(line, LargeembWarning, stacklevel=2)
    return result


@published_remotely(RESULT_FILES)  # an s3:// or gs:// out: staged here, then uploaded
def evaluate_to(
    real,
    fake,
    out: str,
    config: EvaluateConfig | None = None,
    *,
    real_array: str | None = None,
    fake_array: str | None = None,
    real_labels=None,
    fake_labels=None,
    force: bool = False,
    resume: bool = False,
    client=None,
    on_metrics=None,
    label: str | None = None,
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
    ``label`` names the run in ``metrics.json["run"]`` (default: the fake
    set's name), beside the time it finished, the host and its elapsed time;
    ``report.html`` is written too. ``out`` may be an ``s3://`` or ``gs://``
    prefix: see :mod:`largeemb.io.objectstore`. Other parameters as for :func:`evaluate`.
    """
    started = time.time()
    config = config_of(config, options, "evaluate_to")
    work = os.path.join(out, checkpoint.WORK_DIR)
    # Claims --out (refusing early), and publishes only if everything below succeeds.
    inputs = [real, fake, *_reference_source(real), getattr(getattr(real, "source", None), "location", None)]
    with result_dir(out, force, RESULT_FILES, inputs=_paths(inputs), also_replaced=(checkpoint.WORK_DIR,)) as staging:
        if force and not resume:
            checkpoint.discard(work)
        result = evaluate(
            real, fake, config, real_array=real_array, fake_array=fake_array, real_labels=real_labels,
            fake_labels=fake_labels, client=client, checkpoint_dir=work, resume=resume,
        )
        if on_metrics is not None:
            on_metrics(result)
        if config.samples:
            write_samples(result, staging.file(SAMPLES_STORE))
        if config.plots:
            try:
                result.add_timings(write_plots(result, staging.path).timings_s)
            except Exception as exc:  # a figure must never cost the metrics of a long run
                result.warnings.append(f"plots failed ({type(exc).__name__}: {exc}); metrics.json is complete")
        result.run = {
            "label": label if label is not None else default_label(fake),
            "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": socket.gethostname(),
            "elapsed_s": round(time.time() - started, 3),
            "id": uuid.uuid4().hex,  # tells this run's history line from any other, whatever their times
        }
        document = result.to_dict()
        staging.write_json(METRICS_FILE, document)
        try:
            write_report(out, document, into=staging.path)
        except Exception as exc:  # a page must never cost the metrics of a long run
            result.warnings.append(f"report.html failed ({type(exc).__name__}: {exc}); metrics.json is complete")
    checkpoint.discard(work)
    return result


def default_label(fake) -> str:
    """A run's label when none is given: the fake set's file or store name, without its extension."""
    if not isinstance(fake, (str, os.PathLike)):
        return "fake"
    name = os.path.basename(str(fake).rstrip("/").split("::")[0])
    for ext in (".zarr", ".npy", ".npz"):
        name = name.removesuffix(ext)
    return name or str(fake)


def finished_run(out: str) -> bool:
    """Whether ``out`` holds the result of a run that finished (published, no unfinished work left)."""
    if is_remote(out):  # uploaded, so committed and finished
        return exists_at(out, METRICS_FILE)
    unfinished = os.path.exists(os.path.join(out, checkpoint.WORK_DIR, checkpoint.MANIFEST))
    return os.path.isfile(os.path.join(out, METRICS_FILE)) and not unfinished


@published_remotely(REFERENCE_FILES, reopen=load_reference)
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
        Directory (or ``s3://``/``gs://`` prefix) for the reference; refused if it already holds one, unless
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
        raise InputError(
            "a reference needs a real store it can find again", "in build_reference()", "pass a zarr path or URL"
        )
    # Claims --out first (refusing an unwritable or taken one before any work);
    # everything is built in staging and published only whole.
    work = os.path.join(out, checkpoint.WORK_DIR)
    with result_dir(out, force, REFERENCE_FILES, inputs=_paths([real])) as staging:
        passes = real_passes(real, config, work, real_array=real_array, client=client, force=force, resume=resume)
        side = passes.real
        write_reference(
            staging, side.source, passes.context.k, config.metric, side.moments, side.fingerprint, side.radii.values,
            passes.context.partition, passes.context.split_k, side.radii.parts,
        )
    checkpoint.discard(work)
    return load_reference(out)


def real_passes(real, config: EvaluateConfig, work: str, *, real_array=None, client=None, force=False, resume=False):
    """The real set's passes alone (moments, fingerprint, partition, radii at every k of ``config``), finished
    tasks kept in ``work``: what :func:`build_reference` stores and several fakes of one call share."""
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
    return passes


def _paths(inputs) -> list[str]:
    """The inputs given as local paths (URLs and in-memory arrays cannot overlap --out)."""
    return [str(obj) for obj in inputs if isinstance(obj, (str, os.PathLike)) and "://" not in str(obj)]


def _reference_source(real) -> list[str]:
    """The store behind a reference directory, read leniently
    (a damaged reference is refused later, with its reason)."""
    if not is_reference(real):
        return []
    try:
        with open(os.path.join(str(real), REFERENCE_FILE)) as fh:
            return [json.load(fh)["source"]["location"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


