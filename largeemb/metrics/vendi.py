"""The Vendi score (Friedman & Dieng 2023) of each set, cosine kernel, q = 1:
exp(Shannon entropy) of the eigenvalues of K/n.

The non-zero eigenvalues of the n × n kernel matrix K/n = U Uᵀ/n equal those
of the dim × dim matrix Uᵀ U/n, the second moment of the unit rows, streamed
in the moments pass; a set with fewer rows than dims uses U Uᵀ from its rows
instead (O(n²·dim), not O(dim³)).
"""

from __future__ import annotations

import numpy as np

from largeemb.kernels.distance import unit_rows
from largeemb.kernels.highdim import few_rows
from largeemb.metrics.base import Found, Needs, Value
from largeemb.run.progress import announce_long_step, cubic_seconds
from largeemb.run.threads import one_blas_thread

NAME = "vendi"
KEYS = (NAME, "vendi_real", "vendi_fake")
TIMING = "companions"


def chosen(config) -> bool:
    return NAME in config.companions


def needs(config, real, fake) -> Needs:
    """The unit moment of each set but one whose score comes from its rows (a reference always keeps the real set's)."""
    sets = (("real", real), ("fake", fake))
    return Needs(
        unit=tuple(role for role, src in sets if src is not None and (fake is None or not few_rows(src.rows, src.dim)))
    )


def value(found: Found, config) -> Value:
    out = Value()
    dim = len(found.real_moments.mean)
    for role, moments, src in (("real", found.real_moments, found.real), ("fake", found.fake_moments, found.fake)):
        key = f"{NAME}_{role}"
        if few_rows(src.rows, src.dim):  # the n × n kernel matrix: O(n²·dim), not O(dim³)
            out.metrics[key] = vendi_score_of_rows(src.read(0, src.rows))
            continue
        unit = moments.unit_moment()
        if unit is None:
            out.warnings.append(f"{key} not computed: the reference was built by an older largeemb (rebuild it)")
            continue
        announce_long_step(
            f"{key}, an eigenproblem of dim {dim:,} (--companions without vendi skips it)", cubic_seconds(dim)
        )
        out.metrics[key] = vendi_score(unit, moments.count)
    return out


@one_blas_thread()
def vendi_score(unit_s2: np.ndarray, count: int) -> float:
    """exp(Shannon entropy) of the eigenvalues of K/n for the cosine kernel (q = 1)."""
    values = np.linalg.eigvalsh((unit_s2 + unit_s2.T) / (2 * count))
    values = values[values > 0]
    return float(np.exp(-(values * np.log(values)).sum()))


def vendi_score_of_rows(rows: np.ndarray) -> float:
    """As :func:`vendi_score`, from the rows themselves: the n × n K/n = U Uᵀ/n (where n < dim, O(n²·dim))."""
    unit = unit_rows(rows)
    return vendi_score(unit @ unit.T, len(unit))  # U Uᵀ and Uᵀ U share their non-zero eigenvalues
