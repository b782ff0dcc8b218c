"""largeemb: exact precision, recall, density, coverage and Fréchet distance
for millions of embeddings, streamed out of core."""

from largeemb.config import EvaluateConfig
from largeemb.errors import InputError
from largeemb.version import __version__

__all__ = [
    "evaluate", "evaluate_to", "build_reference", "show_progress", "EvaluateConfig", "InputError", "__version__",
]


def show_progress(on: bool = True) -> None:
    """Print progress and run notes (``largeemb: radii: 120/300 tasks …``) to stderr, where a notebook or a
    piped script shows them (the CLI always does; in Python they go to the ``largeemb`` logger otherwise)."""
    from largeemb.cli_process import log_to_stderr, stop_logging_to_stderr

    if on:
        log_to_stderr()
    else:
        stop_logging_to_stderr()


def __getattr__(name):  # heavy modules load only when used
    if name in ("evaluate", "evaluate_to", "build_reference"):
        from largeemb import api

        return getattr(api, name)
    raise AttributeError(name)
