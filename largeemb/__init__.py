"""largeemb: exact precision, recall, density, coverage and Fréchet distance
for millions of embeddings, streamed out of core."""

from .config import EvaluateConfig
from .errors import InputError

__version__ = "0.1.0"
__all__ = ["evaluate", "build_reference", "EvaluateConfig", "InputError", "__version__"]


def __getattr__(name):  # heavy modules load only when used
    if name == "evaluate":
        from .api import evaluate

        return evaluate
    if name == "build_reference":
        from .reference import build_reference

        return build_reference
    raise AttributeError(name)
