"""Object stores (``s3://``, ``gs://``): the package each needs, and results published to them.

Reading goes through fsspec, as for any URL (zarr opens the store itself); this
module only turns a missing backend into one line naming the extra to install.
Credentials and endpoints are the backend's own: for S3 the usual AWS
environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``,
``AWS_ENDPOINT_URL`` for MinIO or another S3-compatible service, or a role:
IRSA, an instance profile), for GCS Application Default Credentials
(``GOOGLE_APPLICATION_CREDENTIALS``, workload identity). Worker processes
inherit the environment, so they read with the same credentials.

Writing (:func:`published_remotely`): an object store has no rename, so a
result cannot be moved into place whole. The run writes and publishes it in a
local staging directory (under ``LARGEEMB_STAGING_DIR``, default the system's
temporary directory; one per URL, which also keeps ``.work`` for ``--resume``
on the same host), then uploads it: first the previous result's commit mark
(``metrics.json``, ``reference.json``) is deleted, then its other files, then
every new file, the commit mark last. A prefix holding a commit mark holds a
whole result; an upload cut short leaves none, and the next run clears what
it left (marked by ``UPLOADING``). An existing result, or files by a result's
names that no upload of ours left, are refused without ``force``, before any
work and again just before the upload. Two hosts writing one prefix at once are not
locked out of each other (one host is: the staging directory's lock). Several
fakes in one call upload each result to ``OUT/NAME/`` this way, and
``summary.json`` as one PUT (:func:`write_json_at`: an object is replaced whole).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import json
import os
import shutil
import tempfile
import uuid

from largeemb.errors import InputError, OutputExistsError, StoreReadError
from largeemb.io.lock import OutputLock
from largeemb.io.output import remove_entry

#: URL scheme → (the fsspec backend's package, the largeemb extra that installs it).
BACKENDS = {"s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"), "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs")}
#: Where results bound for an object store are staged (default: the temporary directory).
STAGING_ENV = "LARGEEMB_STAGING_DIR"
#: An object beside a result while it is uploaded: result files without a commit mark next to it are a cut
#: upload's (cleared by the next run), without it a user's (refused without force).
UPLOADING = ".largeemb-uploading"


def scheme(location) -> str:
    text = str(location)
    return text.split("://", 1)[0].lower() if "://" in text else ""


def is_remote(location) -> bool:
    """A URL of a file system other than the local one (``file://`` is local)."""
    return isinstance(location, (str, os.PathLike)) and scheme(location) not in ("", "file")


def require_backend(location, where: str) -> None:
    """Refuse an ``s3://``/``gs://`` location whose fsspec backend is not installed, naming the install command."""
    backend = BACKENDS.get(scheme(location))
    if backend is None:
        return
    package, extra = backend
    try:
        importlib.import_module(package)
    except ImportError:
        raise InputError(
            f"{scheme(location)}:// needs the {package} package, which is not installed", f"{where} {location}",
            f"install it with: pip install 'largeemb[{extra}]'",
        ) from None


def filesystem(url: str):
    """The fsspec file system of ``url`` and the path inside it (the backend checked first)."""
    import fsspec.core

    require_backend(url, "for")
    return fsspec.core.url_to_fs(url)


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    return fs.exists(path)


def join(url: str, *names: str) -> str:
    return "/".join([url.rstrip("/"), *names])


def local_side(out: str) -> str:
    """Where a run keeps the local part of ``out``: ``out`` itself, or an object-store ``out``'s staging directory
    (its result before the upload, its ``.work``)."""
    if not is_remote(out):
        return out
    root = os.environ.get(STAGING_ENV) or os.path.join(tempfile.gettempdir(), "largeemb-staging")
    return os.path.join(root, hashlib.sha256(str(out).rstrip("/").encode()).hexdigest()[:16], "out")


def drop_empty_staging(out: str) -> None:
    """Remove an object-store ``out``'s staging directory once nothing is left in it."""
    if is_remote(out):
        for path in (local_side(out), os.path.dirname(local_side(out))):
            try:
                os.rmdir(path)
            except FileNotFoundError:
                continue
            except OSError:  # not empty: .work kept for --resume, or another run's lock
                return


def exists_at(out: str, name: str) -> bool:
    """Whether ``out`` (a directory or an object-store prefix) holds ``name``."""
    return _remote_call(out, lambda: exists(join(out, name))) if is_remote(out) else os.path.exists(
        os.path.join(out, name)
    )


def write_json_at(out: str, name: str, payload: dict) -> None:
    """``out/name`` whole: in an object store one PUT (an object is replaced whole), locally a temporary file
    renamed over the old one."""
    text = json.dumps(payload, indent=2)
    if is_remote(out):
        fs, root = filesystem(out)
        _remote_call(out, lambda: fs.pipe_file(f"{root}/{name}", text.encode()), f"{name} was not written")
        return
    os.makedirs(out, exist_ok=True)
    tmp = os.path.join(out, f".{name}.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, os.path.join(out, name))


def read_json_at(out: str, name: str):
    """``out/name`` parsed (a directory or an object-store prefix); errors as ``open`` and ``json`` raise them."""
    if not is_remote(out):
        with open(os.path.join(out, name)) as fh:
            return json.load(fh)
    import fsspec

    with fsspec.open(join(out, name), "r") as fh:
        return json.load(fh)


def published_remotely(result_files, reopen=None):
    """Let ``fn(..., out, ..., force=, resume=)`` take an object-store ``out``: it runs into a local staging
    directory, whose published result is then uploaded (see the module docstring). ``result_files`` names
    every entry of a result, its commit mark first; ``reopen(url)``, if given, is returned instead of ``fn``'s
    value (which would name the staging directory)."""

    def decorate(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            url = bound.arguments["out"]
            if not is_remote(url):
                return fn(*args, **kwargs)
            url, force = str(url).rstrip("/"), bound.arguments.get("force", False)
            if scheme(url) in ("http", "https"):  # read-only through fsspec
                raise InputError(
                    "--out cannot be an http(s) URL", f"at {url}", "give a directory or an s3:// or gs:// prefix"
                )
            require_backend(url, "for --out")
            _refuse_existing(url, result_files, force)
            _probe_writable(url)
            with _staging_for(url) as local:
                bound.arguments["out"] = local
                value = fn(*bound.args, **bound.kwargs)
                upload_result(local, url, result_files, force)
            return reopen(url) if reopen is not None else value

        return wrapper

    return decorate


def _refuse_existing(url: str, result_files, force: bool) -> None:
    """Without ``force``, refuse a prefix holding a result (its commit mark), or files by a result's names
    that no cut upload of ours left (a user's): what the local rule refuses too."""
    if force:
        return
    fs, root = filesystem(url)

    def names() -> set[str]:
        fs.invalidate_cache(root)  # listings cached before the run would hide a result committed since
        try:
            return {path.rstrip("/").rsplit("/", 1)[-1] for path in fs.ls(root, detail=False)}
        except FileNotFoundError:
            return set()

    present = _remote_call(url, names)
    if result_files[0] in present:
        raise OutputExistsError(
            f"output prefix already holds a result ({result_files[0]})", f"at {url}",
            "choose another --out or pass --force (force=True in Python) to replace it",
        )
    theirs = [name for name in result_files if name in present]
    if theirs and UPLOADING not in present:
        raise OutputExistsError(
            f"output prefix holds files by a result's names ({', '.join(theirs)})", f"at {url}",
            "choose another --out or pass --force (force=True in Python) to replace them",
        )


def _probe_writable(url: str) -> None:
    """Write and delete an empty object under ``url``: a missing bucket or read-only credentials are refused
    before any work, not after it."""
    fs, root = filesystem(url)
    probe = f"{root}/.largeemb-probe-{uuid.uuid4().hex[:8]}"

    def write_and_delete():
        fs.pipe_file(probe, b"")
        fs.rm(probe)

    _remote_call(url, write_and_delete, "so nothing was computed")


class _staging_for:
    """The local staging directory of ``url`` (``ROOT/<hash>/out``), held under a lock on ``ROOT/<hash>``.

    What a previous run left in it besides its checkpoints (a result whose upload failed) is cleared: the
    directory is ours alone, never a user's.
    """

    def __init__(self, url: str):
        self.url, self.local = url, local_side(url)
        self.home = os.path.dirname(self.local)
        self.lock = None

    def __enter__(self) -> str:
        try:
            os.makedirs(self.local, exist_ok=True)
        except OSError as exc:
            raise InputError(
                f"cannot create the local staging directory ({exc.strerror or type(exc).__name__})",
                f"at {self.home}", f"set {STAGING_ENV} to a writable directory with room for the result",
            ) from None
        self.lock = OutputLock(self.home)
        self.lock.acquire()
        for name in os.listdir(self.local):
            if not name.startswith("."):  # .work (checkpoints), the inner lock and staging are the run's own
                remove_entry(os.path.join(self.local, name))
        return self.local

    def __exit__(self, exc_type, *_):
        if exc_type is None:  # uploaded: nothing to keep (on an error, .work stays for --resume)
            shutil.rmtree(self.local, ignore_errors=True)
        self.lock.release()
        drop_empty_staging(self.url)
        return False


def upload_result(local: str, url: str, result_files, force: bool) -> None:
    """Upload the result published in ``local`` to ``url``: the old result deleted (commit mark first), the new
    files uploaded, the commit mark last. Hidden entries (``.work``, locks) stay local."""
    fs, root = filesystem(url)
    mark = result_files[0]
    entries = sorted(name for name in os.listdir(local) if not name.startswith("."))
    if mark not in entries:  # nothing was published (the run wrote no result): nothing to upload
        return

    def upload():
        _refuse_existing(url, result_files, force)  # a run on another host may have committed meanwhile
        fs.pipe_file(f"{root}/{UPLOADING}", b"")  # what this upload leaves, if cut, is ours to clear
        for name in dict.fromkeys([mark, *result_files, *entries]):
            if fs.exists(f"{root}/{name}"):
                fs.rm(f"{root}/{name}", recursive=True)
        files = [path for name in entries if name != mark for path in _files(os.path.join(local, name))]
        if files:  # in parallel
            fs.put(files, [f"{root}/{os.path.relpath(path, local).replace(os.sep, '/')}" for path in files])
        fs.put_file(os.path.join(local, mark), f"{root}/{mark}")  # the commit mark, once every other file is there
        fs.rm(f"{root}/{UPLOADING}")

    _remote_call(
        url, upload,
        f"the upload stopped before the new {mark} (the commit mark), so no new result is there "
        f"(this run's is kept in {local} until the next run to this --out)",
    )


def _files(path: str):
    if not os.path.isdir(path):
        yield path
        return
    for folder, _, names in os.walk(path):
        for name in sorted(names):
            yield os.path.join(folder, name)


def _remote_call(url: str, call, consequence: str = "nothing was written there"):
    """``call()``; an error of the object store (network, permissions, no such bucket) as one line."""
    try:
        return call()
    except InputError:
        raise
    except (OSError, ValueError, RuntimeError) as exc:  # botocore/google errors surface as these through fsspec
        denied = isinstance(exc, PermissionError)
        error = InputError if denied or isinstance(exc, FileNotFoundError) else StoreReadError
        raise error(
            f"object-store request failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''});"
            f" {consequence}",
            f"at {url}",
            "check the bucket, the credentials (AWS_* or GOOGLE_APPLICATION_CREDENTIALS) and the endpoint, and rerun",
        ) from None
