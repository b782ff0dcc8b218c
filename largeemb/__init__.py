"""largeemb: exact precision, recall, density, coverage and Fréchet distance
for millions of embeddings, streamed out of core."""

from largeemb.config import EvaluateConfig
from largeemb.errors import InputError
from largeemb.version import __version__

__all__ = ["evaluate", "evaluate_to", "build_reference", "EvaluateConfig", "InputError", "__version__"]


def __getattr__(name):  # heavy modules load only when used
    if name in ("evaluate", "evaluate_to", "build_reference"):
        from largeemb import api

        return getattr(api, name)
    raise AttributeError(name)
