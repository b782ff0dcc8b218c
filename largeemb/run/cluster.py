"""Running on dask.distributed: a LocalCluster of worker processes that this
job starts, worker jobs submitted to a batch system (``--cluster``, see
largeemb.run.jobqueue), or a cluster that is already running (``--scheduler
ADDRESS``, or a ``Client`` given to the Python API). Any of them over TLS
when the config asks (largeemb.run.tls).

Workers open the stores themselves (every task reads its own rows), so the
graph sent to the scheduler holds locations and row ranges; values many tasks
need (radii, the centre) are scattered once.
"""

from __future__ import annotations

import logging
import os
import re
import time
from contextlib import contextmanager, nullcontext

import dask
from distributed import Client, LocalCluster, as_completed
from distributed.client import FutureCancelledError
from distributed.diagnostics.plugin import WorkerPlugin

from largeemb.errors import InputError, StoreReadError
from largeemb.io.faults import is_transient, short_error
from largeemb.run import tls
from largeemb.run.executor import LostWork
from largeemb.run.job_signals import DeafToJobSignals, QuietTaskErrors, signals_for_this_process_only
from largeemb.run.tally import counts_of, noted_result, value_of
from largeemb.run.threads import cores, pools_at_one_thread, warn_if_oversubscribed

logger = logging.getLogger("largeemb")

#: Seconds to wait for a scheduler to answer, and for its first worker to join.
CONNECT_TIMEOUT_S = 30
WORKER_WAIT_S = 120
SCATTER_TRIES = 3
#: Seconds the LocalCluster this job started gets to close (then its workers are killed).
CLOSE_TIMEOUT_S = 10
PLUGIN_NAME = "largeemb-one-blas-thread"
DEAF_PLUGIN_NAME = "largeemb-deaf-to-job-signals"
QUIET_PLUGIN_NAME = "largeemb-quiet-task-errors"
#: Seconds an interrupted run waits for its own workers to take the order to be quiet.
QUIET_TIMEOUT_S = 2
#: Environment of the worker processes this job starts: dask's default minus
#: MALLOC_TRIM_THRESHOLD_, which turns off glibc's adaptive mmap threshold, so
#: every tile-sized array is a fresh mmap with page faults (measured: tile tasks
#: 1.8x slower, 16.7 s vs 9.3 s for one worker on 20,000 x 128 per set).
WORKER_ENVIRON = {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1}


class OneBlasThread(WorkerPlugin):
    """Holds a worker's BLAS and OpenMP pools at one thread (also on workers that
    join or restart later): parallelism comes from the worker's task threads.

    Workers started by a nanny already run with OMP/BLAS threads at 1; workers
    started without one (``--no-nanny``, some batch launchers) would otherwise
    give every task all the node's cores. faiss's OpenMP setting is per thread,
    so the tile tasks also set it themselves.
    """

    def setup(self, worker):
        import faiss  # noqa: F401  (load its BLAS and OpenMP now, so that the limit reaches them)

        self._limits = pools_at_one_thread()
        if os.environ.get("MALLOC_TRIM_THRESHOLD_"):
            _reuse_freed_tiles()

    def teardown(self, worker):
        self._limits.restore_original_limits()


def _reuse_freed_tiles() -> None:
    """Undo the cost of dask's MALLOC_TRIM_THRESHOLD_ for tile-sized arrays.

    Setting that variable turns off glibc's adaptive mmap threshold, so every
    array above 128 KiB becomes a fresh mmap and page-faults on first touch
    (tile tasks ran 1.8x slower). Serving arrays up to 32 MiB from the heap and
    trimming only above 256 MiB lets freed tiles be reused, as without dask.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to undo
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 * 2**20)
    libc.mallopt(m_trim_threshold, 256 * 2**20)


class OnCluster:
    """Runs graphs through a ``dask.distributed`` client."""

    remote = True

    def __init__(self, client: Client, what: str, own: bool = False, hold_worker=None):
        self.client, self.what, self.own = client, what, own
        # Worker jobs come and go (adaptive scaling): a context that keeps one
        # worker while values are sent or workers asked, or None where workers stay.
        self.hold_worker = hold_worker

    def quiet(self) -> None:
        """An interrupted or failed run: no more log lines from dask here, nor from workers this job started
        (they print their goodbyes while the run closes them). A shared cluster's workers keep their logs.

        This process's levels stay silenced while the run unwinds and its objects are collected (their
        late "Task was destroyed" lines included); the next cluster run puts them back."""
        if not _silenced:
            _silenced.update(_quiet_logs())
        if self.own:
            try:
                self.client.run(_quiet_logs, on_error="ignore", callback_timeout=QUIET_TIMEOUT_S)
            except Exception:  # a worker that cannot hear it is closed all the same
                pass

    def describe(self) -> str:
        return f"{self.what}, one faiss/BLAS thread per task"

    def share(self, values: list) -> list:
        # Broadcast: a copy on every worker, so losing one worker loses no shared value.
        # A worker dying during the scatter is retried: the others carry on.
        if not values:
            return []
        for attempt in range(SCATTER_TRIES):
            try:
                with self._worker_held():
                    return self.client.scatter(list(values), hash=False, broadcast=True)
            except OSError:  # CommClosedError and timeouts are OSErrors
                if attempt == SCATTER_TRIES - 1:
                    raise
                logger.info("a worker was lost while sending shared values; retrying")
                time.sleep(1)

    def workers_missing(self, path: str) -> list[str]:
        """Addresses of workers on which ``path`` does not exist."""
        with self._worker_held():
            return sorted(address for address, seen in self.client.run(os.path.exists, path).items() if not seen)

    def _worker_held(self):
        return self.hold_worker() if self.hold_worker else nullcontext()

    def compute(self, tasks: dict, output, tracked: set, progress):
        tasks, reported = _reporting(tasks, tracked)
        futures = self.client.get(tasks, [output, *reported], sync=False)
        root, progress_futures = futures[0], futures[1:]
        try:
            # An error comes back as the "result" here (raise_errors=False) and is raised by the gather below,
            # as before.
            for finished, counts in as_completed(
                progress_futures, loop=self.client.loop, with_results=True, raise_errors=False
            ):
                progress.advance()
                if isinstance(counts, dict):
                    progress.note(counts)
                finished.release()
            return self.client.gather(root)
        except FutureCancelledError as exc:
            self.client.cancel(futures)
            raise LostWork(str(exc)) from exc
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):  # before cancelling: workers and scheduler log that
                self.quiet()
            self.client.cancel(futures)
            raise


def _is_task(task) -> bool:
    return isinstance(task, tuple) and bool(task) and callable(task[0])


def _reporting(tasks: dict, tracked: set) -> tuple[dict, list]:
    """The graph with every task wrapped for the cluster (:func:`_portable_errors`), each tracked
    task computing its value beside what it reports (:func:`~largeemb.run.tally.noted_result`),
    its key taking the value, and a tiny task per tracked key taking what it reported: the keys
    of those, whose results alone travel back as the units finish."""
    out, reported = {}, []
    for key, task in tasks.items():
        if not _is_task(task):
            out[key] = task
        elif key in tracked:
            work, counts = (*key, "work"), (*key, "reported")
            out[work] = (_portable_errors, noted_result, *task)
            out[key], out[counts] = (value_of, work), (counts_of, work)
            reported.append(counts)
        else:
            out[key] = (_portable_errors, *task)
    return out, sorted(reported, key=str)


class TaskFailed(RuntimeError):
    """An error of a task on a worker that could not travel back as it was (it does not pickle)."""


def _portable_errors(func, *args):
    """Run a task so that whatever it raises reaches this process as one readable error.

    An exception that does not pickle (aiohttp's keep their request and
    session) would otherwise be replaced by dask with a 300-line traceback
    and exit 1; a transient one must still say exit 3.
    """
    import pickle

    try:
        return func(*args)
    except InputError as exc:
        error = exc
    except Exception as exc:
        if is_transient(exc):
            error = StoreReadError(
                f"a task could not read its data ({short_error(exc)})",
                "on a dask worker",
                "check that the store is reachable from every worker and rerun "
                "(exit status 3: a later retry may succeed)",
            )
        else:
            try:
                pickle.dumps(exc)
                error = exc
            except Exception:
                error = TaskFailed(short_error(exc))
    # dask pickles the whole chain of causes too: cut it, and raise outside the
    # except clause, where Python would chain the original back on.
    error.__cause__ = error.__context__ = None
    raise error


@contextmanager
def open_executor(client, scheduler: str | None, workers: int | None, threads_per_worker: int | None, config=None):
    """An :class:`OnCluster` for a given client, a scheduler address, worker jobs
    (``config.cluster``), or a new LocalCluster; over TLS where ``config`` asks."""
    _loud_again()
    security = tls.security_of(config) if config is not None else None
    if client is not None:
        with _one_blas_thread(client):
            yield OnCluster(client, f"dask cluster at {client.scheduler.address}")
    elif config is not None and config.cluster:
        from largeemb.run import jobqueue

        with jobqueue.job_cluster(config, security) as (job_client, what, hold_worker), _one_blas_thread(job_client):
            executor = OnCluster(job_client, what, own=True, hold_worker=hold_worker)
            try:
                yield executor
            except BaseException:
                executor.quiet()
                raise
    elif scheduler:
        client = _connect(scheduler, security)
        try:
            with _one_blas_thread(client):
                yield OnCluster(client, f"dask cluster at {scheduler}")
        finally:
            client.close()
    else:
        threads = threads_per_worker or max(1, cores() // workers)
        warn_if_oversubscribed(workers * threads, "the LocalCluster")
        cluster = None
        try:
            with (
                dask.config.set({"distributed.nanny.pre-spawn-environ": WORKER_ENVIRON}),
                signals_for_this_process_only(),
            ):
                cluster = LocalCluster(
                    n_workers=workers, threads_per_worker=threads, processes=True, host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",
                    **({"protocol": "tls://", "security": security} if security else {}),
                )
            with Client(cluster, set_as_default=False) as local_client, _one_blas_thread(local_client):
                local_client.register_plugin(DeafToJobSignals(), name=DEAF_PLUGIN_NAME)  # workers restarted later, too
                local_client.register_plugin(QuietTaskErrors(), name=QUIET_PLUGIN_NAME)
                what = (
                    f"LocalCluster of {workers} worker processes x {threads} task threads"
                    f"{' over TLS' if security else ''}"
                )
                executor = OnCluster(local_client, what, own=True)
                try:
                    yield executor
                except BaseException:
                    executor.quiet()  # the error line says what happened; the cluster's goodbyes would only bury it
                    raise
        except BaseException:  # e.g. Ctrl-C while the cluster starts (held until it has started)
            if not _silenced:
                _silenced.update(_quiet_logs())
            raise
        finally:
            if cluster is not None:
                cluster.close(timeout=CLOSE_TIMEOUT_S)


#: dask's log levels in this process before an interrupted run silenced them, to put back.
_silenced: dict[str, int] = {}


def _loud_again() -> None:
    for name, level in _silenced.items():
        logging.getLogger(name).setLevel(level)
    _silenced.clear()


def _quiet_logs() -> dict[str, int]:
    """Silence dask's loggers in this process (run on the workers too); the levels they had.

    Each logger of theirs, not only the parents: dask's logging config gives
    some children levels of their own (``distributed.client: warning``).
    """
    prefixes = ("distributed", "tornado", "asyncio")
    names = [name for name in list(logging.root.manager.loggerDict) if name.split(".")[0] in prefixes]
    levels = {}
    for name in sorted(set(names) | set(prefixes)):
        levels[name] = logging.getLogger(name).level
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    return levels




def _connect(address: str, security=None) -> Client:
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False, security=security)
    except (OSError, TimeoutError, ValueError) as exc:
        raise _unreachable(address, exc) from None
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except TimeoutError:
        client.close()
        raise InputError(
            f"no dask worker joined within {WORKER_WAIT_S} s",
            f"at --scheduler {address}",
            "start workers with `dask worker ADDRESS` (see jobs/)",
        ) from None
    return client


def _unreachable(address: str, exc: Exception) -> InputError:
    """Why the scheduler at ``address`` could not be joined, in one line."""
    where = f"at --scheduler {address}"
    detail = f"{type(exc).__name__}: {exc}"
    if address.startswith("tls://") and "certificate does not match" in str(exc):
        return InputError(
            "the dask scheduler's TLS certificate is not signed by the CA this client trusts",
            where,
            "pass the CA the cluster's certificates were made with (--tls-ca-file)",
        )
    if address.startswith("tls://") and "SSL" in detail:
        reason = re.search(r"\[SSL: \w+\] [^(]*", detail)  # e.g. [SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca
        return InputError(
            "the dask scheduler refused this client's TLS certificate "
            f"({reason.group(0).strip() if reason else detail})",
            where,
            "pass a certificate and key signed by the cluster's CA (--tls-cert, --tls-key)",
        )
    if not address.startswith("tls://") and tls.speaks_tls(address):
        return InputError(
            "the dask scheduler speaks TLS, and this client plain TCP",
            where,
            f"pass its tls:// address with {tls.TLS_OPTIONS}",
        )
    return InputError(
        f"cannot reach the dask scheduler ({detail})",
        where,
        "check the address (e.g. tcp://host:8786) and that the scheduler is running",
    )


@contextmanager
def _one_blas_thread(client: Client):
    client.register_plugin(OneBlasThread(), name=PLUGIN_NAME)
    try:
        yield
    finally:
        try:
            client.unregister_worker_plugin(PLUGIN_NAME)
        except Exception:  # a cluster going down takes its plugins with it
            logger.debug("could not unregister %s", PLUGIN_NAME, exc_info=True)
