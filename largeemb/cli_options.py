"""The command line's option declarations: one ``Annotated`` type per option
shared by several commands, the parsers of list-valued options, and the
typer classes that give every command plain help.

:mod:`largeemb.cli` declares the commands with these.
"""

from __future__ import annotations

from typing import Annotated

import typer
from typer.core import TyperCommand, TyperGroup

from largeemb.config import CLUSTERS, COMPANIONS, DEFAULT_MAX_JOBS, METRICS, PRECISIONS, EvaluateConfig
from largeemb.errors import InputError

#: Every option's default, from the Python API's config.
DEFAULTS = EvaluateConfig()


def plain_usage(pieces: list[str]) -> list[str]:
    """``REAL FAKE...`` as usage lines have always read, not typer's ``{REAL} {FAKE...}...``."""
    return [
        p.removesuffix("...")[1:-1] if p.startswith("{") and p.removesuffix("...").endswith("}") else p for p in pieces
    ]


class Command(TyperCommand):
    def collect_usage_pieces(self, ctx):
        return plain_usage(super().collect_usage_pieces(ctx))


class Group(TyperGroup):
    def collect_usage_pieces(self, ctx):
        return plain_usage(super().collect_usage_pieces(ctx))


#: Plain help (no rich panels, whose type column shows ``<bool>`` for flags);
#: ``-h`` as well as ``--help``, as most tools accept.
APP_OPTIONS = dict(
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None, cls=Group,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def choices(values) -> str:
    """Metavar listing an option's choices, e.g. ``[euclidean|cosine]`` (the config validates them)."""
    return f"[{'|'.join(values)}]"


Debug = Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")]


def force_option(what: str):
    """``--force``, with what it replaces in this command."""
    return Annotated[bool, typer.Option("--force", help=what)]


#: --force in each command says what it replaces there.
ForceResult = force_option(
    "Replace the result already in --out (metrics, samples, plots) and discard unfinished work there."
)
ForceFigures = force_option(
    "Replace figures already in another --out directory (RUN's own figures are always redrawn)."
)
ForceStore = force_option('Replace DST if it exists.')
ForceDemo = force_option("Replace a result already in --out (the demo's own data is always rewritten).")
ForceReference = force_option('Replace the reference already in --out.')
Metric = Annotated[str, typer.Option(metavar=choices(METRICS), help="Distance (cosine L2-normalises rows first).")]
Precision = Annotated[
    str,
    typer.Option(
        metavar=choices(PRECISIONS),
        help="How tiles multiply first; results are exact either way. "
        "bf16 screens tiles in bfloat16 (needs largeemb[bf16]); "
        "auto: bf16 on CPUs with AVX512-BF16 or AMX when oneDNN is installed and the standard "
        "errors are off, else float32 (faster with their long neighbour lists).",
    ),
]


def parse_k(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise InputError(
            f"--k must be whole numbers separated by commas, got {text!r}", "on the command line",
            "e.g. --k 5 or --k 3,5,10",
        ) from None


def parse_names(text: str) -> tuple[str, ...]:
    if text.strip() == "all":
        return COMPANIONS
    return () if text.strip() in ("", "none") else tuple(part.strip() for part in text.split(","))


Real = Annotated[
    str,
    typer.Argument(
        metavar="REAL", help="Real embeddings: zarr array or group (local path or fsspec URL), .npy or .npz file.",
        show_default=False,
    ),
]
RealArray = Annotated[
    str | None,
    typer.Option(
        "--real-array", "--real-key", metavar="NAME",
        help="Array name when REAL is a zarr group or an .npz file (default: the only array).",
    ),
]


def class_labels(role: str):
    """``--real-labels``/``--fake-labels``: per-class evaluation (see largeemb.io.labels)."""
    return Annotated[
        str | None,
        typer.Option(
            f"--{role}-labels", metavar="FILE.npy|ARRAY|CLASS",
            help=f"Class of each {role} row: a .npy file of integers, an integer array in the {role} store's zarr "
            f"group, or one class for every row (e.g. 3). With both: every metric within each class too "
            "(by_class and class_averaged in metrics.json).",
        ),
    ]


RealLabels, FakeLabels = class_labels("real"), class_labels("fake")
BlockRows = Annotated[
    int | None,
    typer.Option(
        metavar="N",
        help="Rows per streamed block (one task); GEMMs run in 2048-row panels inside it. "
        "Default: 4096, more for sets over 262,144 rows.",
    ),
]
Scheduler = Annotated[
    str | None,
    typer.Option(metavar="ADDRESS", help="Run on the running dask cluster at this address (e.g. tcp://host:8786)."),
]
Workers = Annotated[
    int | None, typer.Option(metavar="N", help="Start a LocalCluster of N worker processes (default: run in-process).")
]
ThreadsPerWorker = Annotated[
    int | None,
    typer.Option(metavar="N", help="Task threads per worker (in-process: of this process); default: cores / workers."),
]
Resume = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Continue an interrupted run from the finished tasks kept in OUT/.work "
        "(a finished run: say so and exit 0).",
    ),
]


Label = Annotated[
    list[str] | None,
    typer.Option(
        "--label", metavar="LABEL",
        help="Name of the run in metrics.json and the history, e.g. a checkpoint step "
        "(one per FAKE, or comma-separated; default: the fake's name).",
    ),
]
History = Annotated[
    str | None,
    typer.Option(
        "--history", metavar="FILE",
        help="Append one JSON line per evaluated fake to FILE (safe to share between runs; see `largeemb history`).",
    ),
]
FailIf = Annotated[
    str | None,
    typer.Option(
        "--fail-if", metavar="EXPR",
        help="Exit 4 after publishing when a condition holds, e.g. 'precision<0.6,recall@10<0.5' (metrics, < <= > >=).",
    ),
]
FailOnRegression = Annotated[
    float | None,
    typer.Option(
        metavar="Z",
        help="Exit 4 after publishing when precision, recall, density or coverage is lower than the previous "
        "--history run for the same real set (or --baseline) by more than Z standard errors.",
    ),
]
Baseline = Annotated[
    str | None,
    typer.Option(
        metavar="LABEL",
        help="With --fail-on-regression: compare with the history's run of this label, not the previous one.",
    ),
]


def parse_labels(values: list[str] | None) -> list[str] | None:
    """``--label a --label b`` or ``--label a,b``: the labels, in order (None: the fakes' names)."""
    if not values:
        return None
    return [part.strip() for value in values for part in value.split(",")]

# Worker jobs of a batch system, and TLS: declared once, taken by name in each command (batch_and_tls).
Cluster = Annotated[
    str | None,
    typer.Option(
        metavar=choices(CLUSTERS),
        help="Submit dask worker jobs to this batch system (needs largeemb[jobqueue]): "
        "0 to --max-jobs, as the work needs them, configured by the site's jobqueue.yaml.",
    ),
]
MaxJobs = Annotated[
    int | None,
    typer.Option(metavar="N", help=f"With --cluster: at most N worker jobs at a time (default {DEFAULT_MAX_JOBS})."),
]
JobCores = Annotated[
    int | None,
    typer.Option(
        metavar="N", help="With --cluster: cores per worker job (default: jobqueue.KIND.cores in the dask config)."
    ),
]
JobMemory = Annotated[
    str | None,
    typer.Option(
        metavar="SIZE", help="With --cluster: memory per worker job, e.g. 32GB (default: jobqueue.KIND.memory)."
    ),
]
JobWalltime = Annotated[
    str | None,
    typer.Option(
        metavar="TIME",
        help="With --cluster: walltime per worker job, e.g. 04:00:00 (default: jobqueue.KIND.walltime); "
        "workers retire before it and are replaced.",
    ),
]
Tls = Annotated[
    bool,
    typer.Option(
        "--tls",
        help="Encrypt and authenticate the scheduler traffic of the cluster this job starts (--workers, --cluster); "
        "throw-away certificates unless given.",
    ),
]
TlsCaFile = Annotated[
    str | None,
    typer.Option(
        "--tls-ca-file", metavar="PEM",
        help="TLS: the cluster's CA certificate (default: distributed.comm.tls.ca-file in the dask config).",
    ),
]
TlsCert = Annotated[
    str | None,
    typer.Option(
        "--tls-cert", metavar="PEM",
        help="TLS: this job's certificate, signed by that CA (default: distributed.comm.tls.client.cert).",
    ),
]
TlsKey = Annotated[
    str | None,
    typer.Option(
        "--tls-key", metavar="PEM",
        help="TLS: the certificate's private key (default: distributed.comm.tls.client.key).",
    ),
]
BATCH_AND_TLS = (
    "cluster", "max_jobs", "job_cores", "job_memory", "job_walltime", "tls", "tls_ca_file", "tls_cert", "tls_key",
)


def batch_and_tls(params: dict) -> dict:
    """A command's batch-job and TLS options (from its ``locals()``), as config fields."""
    return {name: params[name] for name in BATCH_AND_TLS}
