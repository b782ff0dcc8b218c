"""Job configuration: frozen dataclasses, the one place where defaults live."""

from __future__ import annotations

import dataclasses
import numbers
import re
from dataclasses import dataclass, field

from largeemb.errors import InputError

METRICS = ("euclidean", "cosine")
#: The companion metrics computed by default (each cheap next to the passes);
#: KID over every pair is opt-in (``kid``): it costs a pass of its own.
COMPANIONS = (
    "fscore", "authenticity", "vendi", "fd_infinity", "p_precision_recall", "cmmd",
    "clipped_density_coverage", "sym_precision_recall", "pr_cover", "rarity",
    "memorization", "mifid", "kad", "rke",
)
#: Those on by default. P-precision/recall is opt-in: its common radius
#: (1.2 × the mean 4-NN radius) holds most pairs of unclustered or
#: high-dimensional data, so it visits nearly every pair the pruning would skip.
#: Of the k-NN family, PR-cover (radii at k = 9 for both sets) and clipped
#: density/coverage (a real × real pass) are opt-in: they add 15-17% and
#: 19-25% CPU to a metrics-only run (scripts/bench_companions.py --family).
#: The memorisation audit reads only authenticity's per-sample values: on by default with them.
DEFAULT_COMPANIONS = (
    "fscore", "authenticity", "vendi", "fd_infinity", "sym_precision_recall", "rarity", "memorization",
)
#: How the PCA basis of the plots is fitted: exactly from the streamed float64
#: moments, or with scikit-learn's IncrementalPCA, block by block.
PCA_METHODS = ("moments", "incremental")

#: Rows per block when streaming and tiling (one task's share of rows), unless
#: the set is large: see :meth:`EvaluateConfig.resolved`. Inside a task the
#: GEMM runs in ``panel_rows`` panels, which bound its memory.
DEFAULT_BLOCK_ROWS = 4096
#: Rows per GEMM panel inside a block: bounds a tile's float32 distance matrix
#: (2048² × 4 bytes = 16 MiB) independently of the read block size.
DEFAULT_PANEL_ROWS = 2048
#: Field metadata: where the job runs, never what it computes (left out of
#: ``metrics.json["params"]`` and of what a resumed run must match).
EXECUTION = {"execution": True}
#: Values of ``precision`` (see EvaluateConfig).
PRECISIONS = ("auto", "float32", "bf16", "bf16-emulated")
#: Field metadata: options of the plots alone; no checkpointed task depends on
#: them, so a resumed run may change them.
PLOTS_ONLY = {"plots_only": True}
#: With the default block size, a set is cut into at most about this many
#: blocks: tasks grow with its square, and so does the scheduler's bookkeeping.
MAX_BLOCKS = 64
#: An explicit --block-rows may cut a set finer (tests, small sets), but not
#: into more blocks than this: 256 blocks are already ~100,000 tasks a pass.
MAX_EXPLICIT_BLOCKS = 256
#: Batch systems whose worker jobs ``cluster`` can submit (through dask-jobqueue).
CLUSTERS = ("slurm", "pbs", "lsf", "sge")
#: Worker jobs at most when ``cluster`` is given without ``max_jobs``.
DEFAULT_MAX_JOBS = 4
#: What a dask scheduler address looks like: [protocol://]host[:port].
SCHEDULER_ADDRESS = re.compile(r"^([a-z][a-z0-9+.-]*://)?(\[[0-9A-Fa-f:.]+\]|[^\s/:\[\]]+)(:\d+)?/?$")


@dataclass(frozen=True)
class EvaluateConfig:
    """Everything that decides what ``evaluate`` computes.

    ``k`` holds one or more neighbour counts; the first is the primary one
    reported under ``metrics`` in ``metrics.json``. ``samples`` adds the
    per-sample values (nearest rows, realism scores) to the cross pass.

    Where it runs (never what it computes): ``scheduler`` is the address of a
    running dask cluster; ``workers`` starts a LocalCluster of that many worker
    processes; with neither the job runs in-process. ``threads_per_worker`` is
    the task threads of each worker (in-process: of this process; default: the
    cores divided among the workers). ``cluster`` (one of CLUSTERS) submits
    worker jobs to the batch system instead, up to ``max_jobs`` at a time, each
    of ``job_cores``/``job_memory``/``job_walltime`` (default: the site's dask
    config, ``jobqueue.<cluster>.*``). ``tls`` and the ``tls_*`` files make the
    scheduler traffic encrypted and authenticated (see largeemb.run.tls).
    """

    k: tuple[int, ...] = (5,)
    metric: str = "euclidean"
    inclusive: bool = False
    #: None: DEFAULT_BLOCK_ROWS, grown for large sets (see ``resolved``).
    block_rows: int | None = None
    seed: int = 0
    samples: bool = True
    #: Standard errors of precision, recall, density and coverage from random splits of both sets
    #: (largeemb.kernels.splits): about 2.1x the CPU of a metrics-only run; off leaves them out of the result.
    standard_errors: bool = True
    #: Skip tile work that provably cannot change an answer (exact either way;
    #: see largeemb.kernels.prune). Off only to measure what it saves.
    prune: bool = True
    #: Rows per GEMM panel inside a task (tile memory; never changes an answer).
    panel_rows: int = DEFAULT_PANEL_ROWS
    #: How tiles multiply first (exact either way): "float32"; "bf16" screens each
    #: tile in bfloat16 (the ``bf16`` extra) and recomputes in float32 only the
    #: entries near a threshold; "bf16-emulated" does the same with a float32 GEMM
    #: of bfloat16-rounded operands (slower, any CPU: checks the path); "auto" is
    #: "bf16" where the extra loads and the CPU has AVX512-BF16 or AMX, else "float32".
    precision: str = "auto"
    #: Companion metrics to compute, from COMPANIONS (an empty tuple: none).
    companions: tuple[str, ...] = DEFAULT_COMPANIONS
    #: KID as the unbiased MMD² over every pair (a pass of its own, never pruned).
    kid: bool = False
    #: Also KID's subset estimator (torch-fidelity, clean-fid): this many seeded subsets (0: none) …
    kid_subsets: int = 0
    #: … of this many rows of each set, drawn with this seed (torch-fidelity's default).
    kid_subset_size: int = 1000
    kid_subset_seed: int = 2020
    #: KAD's Gaussian bandwidth σ (None: the exact median pairwise distance of the fake set, as kadtk).
    kad_bandwidth: float | None = None
    #: RKE's Gaussian bandwidth σ (None: half the RMS distance of two real rows).
    rke_bandwidth: float | None = None
    #: Compute the projections behind the plots (PCA backdrop, subsamples).
    plots: bool = field(default=True, metadata=PLOTS_ONLY)
    pca: str = field(default="moments", metadata=PLOTS_ONLY)
    #: Rows of each set drawn as points on the PCA plot (all rows when a set is smaller).
    plot_samples: int = field(default=2_000, metadata=PLOTS_ONLY)
    #: Rows of each set in the joint t-SNE subsample; 0 skips t-SNE.
    tsne_samples: int = field(default=1_000, metadata=PLOTS_ONLY)
    workers: int | None = field(default=None, metadata=EXECUTION)
    threads_per_worker: int | None = field(default=None, metadata=EXECUTION)
    scheduler: str | None = field(default=None, metadata=EXECUTION)
    cluster: str | None = field(default=None, metadata=EXECUTION)
    max_jobs: int | None = field(default=None, metadata=EXECUTION)
    job_cores: int | None = field(default=None, metadata=EXECUTION)
    job_memory: str | None = field(default=None, metadata=EXECUTION)
    job_walltime: str | None = field(default=None, metadata=EXECUTION)
    tls: bool = field(default=False, metadata=EXECUTION)
    tls_ca_file: str | None = field(default=None, metadata=EXECUTION)
    tls_cert: str | None = field(default=None, metadata=EXECUTION)
    tls_key: str | None = field(default=None, metadata=EXECUTION)
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "k", _neighbour_counts(self.k))
        companions = (self.companions,) if isinstance(self.companions, str) else tuple(self.companions)
        object.__setattr__(self, "companions", companions)
        unknown = [c for c in companions if c not in COMPANIONS]
        if unknown:
            raise InputError(
                f"unknown companion metric(s) {', '.join(map(repr, unknown))}",
                "in the job configuration",
                f"choose from {', '.join(COMPANIONS)} (or none)",
            )
        if self.kid_subsets < 0 or self.kid_subset_size < 2:
            raise InputError(
                f"KID subsets need kid_subsets >= 0 and kid_subset_size >= 2, "
                f"got {self.kid_subsets} and {self.kid_subset_size}",
                "in the job configuration",
                "pass e.g. --kid-subsets 100 --kid-subset-size 1000",
            )
        for name in ("kad_bandwidth", "rke_bandwidth"):
            value = getattr(self, name)
            # A number from a job file may be a string or a bool: refused here, not a TypeError later.
            real = isinstance(value, numbers.Real) and not isinstance(value, bool)
            if value is not None and not (real and 0 < value < float("inf")):
                raise InputError(
                    f"{name} must be a positive number, got {value!r}",
                    "in the job configuration",
                    f"pass e.g. --{name.replace('_', '-')} 1.5, or leave it out for the default",
                )
        if not self.k or any(v < 1 for v in self.k) or len(set(self.k)) != len(self.k):
            raise InputError(
                f"k must be distinct whole numbers >= 1, got {self.k!r}",
                "in the job configuration",
                "pass e.g. --k 5 or --k 3,5,10",
            )
        if self.metric not in METRICS:
            raise InputError(
                f"unknown metric {self.metric!r}",
                "in the job configuration",
                f"use one of {', '.join(METRICS)}",
            )
        if self.precision not in PRECISIONS:
            raise InputError(
                f"unknown precision {self.precision!r}",
                "in the job configuration",
                f"use one of {', '.join(PRECISIONS)}",
            )
        if self.panel_rows < 64:
            raise InputError(
                f"panel_rows must be at least 64, got {self.panel_rows}",
                "in the job configuration",
                f"use a larger panel_rows (default {DEFAULT_PANEL_ROWS})",
            )
        if self.block_rows is not None and self.block_rows < 64:
            raise InputError(
                f"block_rows must be at least 64, got {self.block_rows}",
                "in the job configuration",
                "use a larger --block-rows (default 4096)",
            )
        if self.pca not in PCA_METHODS:
            raise InputError(
                f"unknown PCA method {self.pca!r}",
                "in the job configuration",
                f"use one of {', '.join(PCA_METHODS)}",
            )
        if self.plot_samples < 1 or self.tsne_samples < 0:
            raise InputError(
                f"subsample sizes must be plot_samples >= 1 and tsne_samples >= 0, "
                f"got {self.plot_samples} and {self.tsne_samples}",
                "in the job configuration",
                "pass e.g. --tsne-samples 1000 (0 skips t-SNE)",
            )
        for name in ("workers", "threads_per_worker", "max_jobs", "job_cores"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InputError(
                    f"{name} must be a whole number >= 1, got {value!r}",
                    "in the job configuration",
                    f"pass e.g. --{name.replace('_', '-')} 2",
                )
        if self.scheduler is not None and not SCHEDULER_ADDRESS.match(str(self.scheduler)):
            # Checked here: dask's Client, given garbage, fails only after
            # leaving a half-made client whose clean-up blocks for a minute.
            raise InputError(
                f"--scheduler {self.scheduler!r} is not a dask scheduler address",
                "in the job configuration",
                "pass e.g. tcp://host:8786 (or host:8786)",
            )
        if self.scheduler and self.workers:
            raise InputError(
                "--scheduler and --workers both given",
                "in the job configuration",
                "use --scheduler to join a running cluster, or --workers to start one here",
            )
        self._check_cluster()
        if self.extra:
            raise InputError(
                f"unknown configuration keys {sorted(self.extra)}",
                "in the job configuration",
                f"use only {', '.join(f.name for f in fields())}",
            )

    def _check_cluster(self) -> None:
        """One way of running at a time; batch-job and TLS options only where they apply."""
        if self.cluster is not None and self.cluster not in CLUSTERS:
            raise InputError(
                f"unknown --cluster {self.cluster!r}", "in the job configuration", f"use one of {', '.join(CLUSTERS)}"
            )
        if self.cluster and (self.scheduler or self.workers):
            raise InputError(
                f"--cluster and --{'scheduler' if self.scheduler else 'workers'} both given",
                "in the job configuration",
                "use --cluster to submit worker jobs, --scheduler to join a running cluster, "
                "or --workers to start one here",
            )
        job_options = [
            name for name in ("max_jobs", "job_cores", "job_memory", "job_walltime") if getattr(self, name) is not None
        ]
        if job_options and not self.cluster:
            raise InputError(
                f"--{job_options[0].replace('_', '-')} applies to worker jobs only",
                "in the job configuration",
                "add --cluster slurm (or pbs, lsf, sge), or leave it out",
            )
        wants_tls = self.tls or any((self.tls_ca_file, self.tls_cert, self.tls_key))
        if wants_tls and not (self.cluster or self.scheduler or self.workers):
            raise InputError(
                "TLS options apply to dask clusters only",
                "in the job configuration",
                "add --workers N, --cluster KIND or --scheduler tls://..., or leave the TLS options out",
            )

    def resolved(self, rows: int) -> EvaluateConfig:
        """This config with a block size for sets of up to ``rows`` rows.

        The default is DEFAULT_BLOCK_ROWS, grown in whole GEMM panels so that
        a set has at most about MAX_BLOCKS blocks (16,384 rows at a million).
        """
        if self.block_rows is not None:
            self._refuse_absurd_task_count(rows)
            return self
        grown = -(-rows // (MAX_BLOCKS * self.panel_rows)) * self.panel_rows
        return dataclasses.replace(self, block_rows=max(DEFAULT_BLOCK_ROWS, grown))

    def _refuse_absurd_task_count(self, rows: int) -> None:
        """Tasks grow with the square of the blocks; past MAX_EXPLICIT_BLOCKS
        scheduling them costs more than their work."""
        blocks = -(-rows // self.block_rows)
        if blocks <= MAX_EXPLICIT_BLOCKS:
            return
        tasks = blocks * (blocks + 1) // 2 + blocks * blocks  # one self pass, the cross pass
        least = -(-rows // MAX_EXPLICIT_BLOCKS)
        raise InputError(
            f"--block-rows {self.block_rows} cuts {rows:,} rows into {blocks:,} blocks, about {tasks:,} tasks per pass "
            f"(they grow with the square of the blocks, and each costs more to schedule than to compute)",
            "in the job configuration",
            f"pass --block-rows {least} or more, or leave it out (the default sizes blocks for the data)",
        )

    @property
    def max_k(self) -> int:
        return max(self.k)

    def params(self) -> dict:
        """What decides the result and the plots (``metrics.json["params"]``): every field but where it runs."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields() if not f.metadata.get("execution")}

    def result_params(self) -> dict:
        """What checkpointed tasks depend on: :meth:`params` less the plots-only options."""
        return {name: v for name, v in self.params().items() if not _field(name).metadata.get("plots_only")}

    @classmethod
    def from_dict(cls, values: dict) -> EvaluateConfig:
        """Build a config from a mapping; unknown keys are an error, never ignored."""
        known = {f.name for f in fields()}
        unknown = {key: v for key, v in values.items() if key not in known}
        return cls(**{key: v for key, v in values.items() if key in known}, extra=unknown)


def _neighbour_counts(k) -> tuple[int, ...]:
    """``k``: one whole number, a sequence of them, or a string such as ``"3,5,10"`` (as on the command line)."""
    try:
        if isinstance(k, str):
            return tuple(int(part) for part in k.split(","))
        return (int(k),) if isinstance(k, numbers.Integral) else tuple(int(v) for v in k)
    except (TypeError, ValueError):
        raise InputError(
            f"k must be whole numbers, got {k!r}", "in the job configuration",
            "pass e.g. k=5, k=(3, 5, 10) or k=\"3,5,10\"",
        ) from None


def fields():
    return [f for f in dataclasses.fields(EvaluateConfig) if f.name != "extra"]


def _field(name: str):
    return next(f for f in fields() if f.name == name)


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class ReadRetry:
    """How a read from a store is retried after a transient error (network, throttling).

    Delays double from ``first_delay_s`` up to ``max_delay_s``, with jitter so
    that many workers hitting one object store do not retry in step; with the
    defaults a read gives up after 8 to 16 s of waiting.
    """

    attempts: int = 6
    first_delay_s: float = 0.5
    max_delay_s: float = 8.0
    #: Seconds a remote store may stay silent (connecting, or between bytes of
    #: an answer) before the attempt counts as failed; the environment
    #: variable LARGEEMB_READ_TIMEOUT overrides it (it reaches dask workers too).
    timeout_s: float = 60.0

    def timeout(self) -> float:
        import os

        try:
            return float(os.environ.get("LARGEEMB_READ_TIMEOUT", self.timeout_s))
        except ValueError:
            return self.timeout_s

    def delays(self):
        """Seconds to wait before each retry (one fewer than ``attempts``)."""
        return [min(self.max_delay_s, self.first_delay_s * 2**i) for i in range(self.attempts - 1)]
