"""Several fakes against one real set in one call, and what a series of runs keeps of each.

:func:`evaluate_all` is what ``largeemb evaluate REAL FAKE [FAKE ...]`` runs.
With one fake, ``out`` is the result directory, as for :func:`largeemb.api.evaluate_to`.
With several, each fake's complete result goes to ``out/NAME/`` (NAME from
its file or store name, made unique) and ``out/summary.json`` lists them all.
The real side's moments, partition and radii are computed once per call
(checkpointed in ``out/.work``, so a resumed call reuses them) and handed to
each fake's evaluation; a reference is read as usual. Each fake's numbers
equal those of evaluating it alone: every number is exact either way.

Each published result may append its line to a history file and be checked
against gates. A fake whose evaluation fails (bad input, an unreadable
store) costs the others nothing: the call goes on and says at the end which
failed. With ``resume``, fakes whose results were published already are not
evaluated again, and each result's history line is written exactly once.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

from largeemb.api import config_of, default_label, evaluate_to, finished_run, real_passes
from largeemb.config import EvaluateConfig
from largeemb.errors import GATE_FAILED, InputError
from largeemb.io.objectstore import drop_empty_staging, exists_at, local_side, write_json_at
from largeemb.io.reference import is_reference, load_reference
from largeemb.io.results import read_metrics
from largeemb.io.store import Source, open_source
from largeemb.passes import moments
from largeemb.pipeline import KnownReal
from largeemb.run import checkpoint
from largeemb.run.session import one_executor
from largeemb.series.gates import failed_gates, regression_against
from largeemb.series.history import append_history, history_line, read_history
from largeemb.series.record import same_run

SUMMARY_FILE = "summary.json"


@dataclass
class FakeRun:
    """One fake set of the call: where its result goes and what became of it."""

    name: str
    fake: str
    out: str
    label: str
    #: Its metrics.json document, once published (or found published, on resume).
    document: dict | None = None
    #: Why it failed, if it did.
    error: InputError | None = None
    #: It had been published before this call (resume).
    earlier: bool = False


@dataclass
class Outcome:
    runs: list[FakeRun]
    #: One line per failed gate, each naming its fake when there are several.
    gate_failures: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[FakeRun]:
        return [run for run in self.runs if run.error is not None]

    @property
    def exit_code(self) -> int:
        """3 when a store could not be read (try again later), else 2 for bad input; 4 for a failed gate; 0."""
        if self.failed:
            return max(run.error.exit_code for run in self.failed)
        return GATE_FAILED if self.gate_failures else 0


def fake_names(fakes) -> list[str]:
    """Directory names for the fakes' results: their file or store names, made unique (``name-2``, ...)."""
    names, seen = [], {}
    for fake in fakes:
        name = default_label(fake)
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return names


def evaluate_all(
    real,
    fakes: list,
    out: str,
    config: EvaluateConfig | None = None,
    *,
    labels: list[str] | None = None,
    history: str | None = None,
    gates=(),
    regression_z: float | None = None,
    baseline: str | None = None,
    force: bool = False,
    resume: bool = False,
    client=None,
    real_array: str | None = None,
    fake_array: str | None = None,
    real_labels=None,
    fake_labels=None,
    on_metrics=None,
    on_failure=None,
    **options,
) -> Outcome:
    """Evaluate each of ``fakes`` against ``real``; see the module docstring.

    ``labels``: one per fake (default: each fake's name). ``history``: a file
    each published result appends its line to. ``gates``: parsed
    :func:`largeemb.series.gates.parse_gates`; ``regression_z``: fail a result
    whose precision, recall, density or coverage is lower than the previous
    history line's for the same real set (or the line labelled ``baseline``)
    by more than this many standard errors. ``on_metrics(run, result)`` is
    called as each fake's numbers exist, ``on_failure(run)`` when one fails.
    ``real_labels``/``fake_labels``: per-class evaluation of each fake (``fake_labels`` apply to every fake).
    Other parameters as for :func:`largeemb.api.evaluate_to`.
    """
    config = config_of(config, options, "evaluate_all")
    if not fakes:
        raise InputError("no fake set given", "on the command line", "pass one or more FAKE stores or files after REAL")
    labels = list(labels) if labels else [default_label(fake) for fake in fakes]
    if len(labels) != len(fakes):
        raise InputError(
            f"{len(labels)} labels for {len(fakes)} fake sets", "in --label",
            "give one label per fake set, in the same order",
        )
    if (regression_z is not None or baseline is not None) and history is None:
        raise InputError(
            "a regression gate compares with earlier runs of a history", "in --fail-on-regression/--baseline",
            "pass --history FILE",
        )
    several = len(fakes) > 1
    dirs = [os.path.join(out, name) for name in fake_names(fakes)] if several else [out]
    runs = [
        FakeRun(os.path.basename(d) if several else default_label(f), f, d, label)
        for d, f, label in zip(dirs, fakes, labels)
    ]
    if several and exists_at(out, SUMMARY_FILE) and not (force or resume):
        raise InputError(
            "holds the results of an earlier call (summary.json)", f"in {out}",
            "pass --resume to finish it, or --force to replace it",
        )
    if history is not None and os.path.exists(history):
        read_history(history)  # an unreadable history is refused before any work
    finished = [resume and not force and finished_run(run.out) for run in runs]
    # Several fakes share the real side, computed once (unless a reference holds it, or every fake is done).
    shared = several and not all(finished) and not is_reference(real) and not isinstance(real, KnownReal)
    # Several fakes: the real side and every fake on one executor (one LocalCluster or set of worker jobs).
    with one_executor(config, client) if several and not all(finished) else contextlib.nullcontext():
        side = _real_side(real, config, out, resume, force, client, real_array) if shared else real
        unchanged = _Unchanged(side, real_array, fake_array)
        outcome = Outcome(runs)
        for run, done in zip(runs, finished):
            if done:
                run.document, run.earlier = read_metrics(run.out), True
                unchanged.check(run)
            else:
                try:
                    result = evaluate_to(
                        side, run.fake, run.out, config, real_array=real_array, fake_array=fake_array,
                        real_labels=real_labels, fake_labels=fake_labels, force=force, resume=resume, client=client,
                        label=run.label,
                        on_metrics=None if on_metrics is None else (lambda result, run=run: on_metrics(run, result)),
                    )
                except InputError as exc:  # a bad or unreadable fake set: the others still get their results
                    if not several:
                        raise
                    run.error = exc
                    if on_failure is not None:
                        on_failure(run)
                    continue
                run.document = result.to_dict()
            _record(run, outcome, history, gates, regression_z, baseline, several)
    if several:
        _write_summary(out, runs)
    if several and not outcome.failed:  # the real side's checkpoints; kept for a resume while a fake is unfinished
        checkpoint.discard(os.path.join(local_side(out), checkpoint.WORK_DIR))
        drop_empty_staging(out)
    return outcome


class _Unchanged:
    """A finished result is reused (resume) only while its inputs' content still matches
    the fingerprints it recorded: one streamed read of each input, the real set's once."""

    def __init__(self, real, real_array, fake_array):
        self.real, self.real_array, self.fake_array = real, real_array, fake_array
        # A real side computed in this call streamed the store already: its fingerprint is known.
        self.real_fingerprint = real.fingerprint if isinstance(real, KnownReal) else None

    def check(self, run: FakeRun) -> None:
        if self.real_fingerprint is None:
            real = load_reference(str(self.real)).source if is_reference(self.real) else self.real
            self.real_fingerprint = _fingerprint(real, self.real_array, "real")
        for role, now in (("real", self.real_fingerprint), ("fake", _fingerprint(run.fake, self.fake_array, "fake"))):
            if run.document[role].get("fingerprint") != now:
                raise InputError(
                    f"the {role} set's content changed since this result was made (fingerprint {now[:12]}, not "
                    f"{str(run.document[role].get('fingerprint'))[:12]})", f"in {run.out}",
                    "rerun with --force to replace the result",
                )


def _fingerprint(data, array: str | None, role: str) -> str:
    source = data if isinstance(data, Source) else open_source(data, array, role=role)
    return moments.moments_stage([], "euclidean", hashed=source).hashed


def _real_side(real, config: EvaluateConfig, out: str, resume: bool, force: bool, client, real_array) -> KnownReal:
    """The real set's moments, partition and radii (every k a reference keeps), checkpointed in ``out/.work``."""
    work = os.path.join(local_side(out), checkpoint.WORK_DIR)  # an object-store out: in its staging directory
    return KnownReal(real_passes(real, config, work, real_array=real_array, client=client, force=force, resume=resume))


def _record(run: FakeRun, outcome: Outcome, history, gates, regression_z, baseline, several: bool) -> None:
    """Gates on the run's result, then its history line (once: a resumed call does not append it again)."""
    doc, prefix = run.document, f"{run.name}: " if several else ""
    lines = read_history(history) if history is not None and os.path.exists(history) else []
    failures = failed_gates(doc, gates)
    if regression_z is not None:
        failures += regression_against(lines, doc, regression_z, baseline)
    outcome.gate_failures += [prefix + line for line in failures]
    if history is not None:
        line = history_line(doc, run.out)
        if not any(same_run(line, old) for old in lines):
            append_history(history, line)


def _write_summary(out: str, runs: list[FakeRun]) -> None:
    """``out/summary.json``: one entry per fake, written whole (renamed into place, or one object-store PUT)."""
    entries = []
    for run in runs:
        entry = {"name": run.name, "label": run.label, "fake": str(run.fake), "result_dir": run.name}
        if run.document is not None:
            doc = run.document
            entry.update(
                {
                    key: doc.get(key)
                    for key in ("run", "metrics", "by_k", "standard_errors", "standard_errors_given_real")
                }
            )
        else:
            entry["error"] = str(run.error)
        entries.append(entry)
    write_json_at(out, SUMMARY_FILE, {"runs": entries})
