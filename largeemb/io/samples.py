"""Per-sample values on disk (``OUT/samples.zarr``) and the "worst rows" listing."""

from __future__ import annotations

import os

import numpy as np

from largeemb.errors import InputError

SAMPLES_STORE = "samples.zarr"
CHUNK_ROWS = 65536

#: name in the store -> (attribute of EvaluationResult, description)
FAKE_ARRAYS = {
    "ball_count": ("fake_counts", "real balls containing the fake row, per k"),
    "radius": ("fake_radii", "k-NN radius within the fake set, per k"),
    "nearest_real": ("fake_nearest_real", "index of the nearest real row (lowest on ties)"),
    "nearest_real_dist": ("fake_nearest_dist", "distance to the nearest real row"),
    "realism": ("fake_realism", "realism score, max over real rows with radius <= median of radius / distance"),
    "authentic": ("fake_authentic", "its nearest real row is nearer to another real row than to it (authenticity)"),
    "rarity": ("fake_rarity", "rarity score at the first k: smallest radius of the real balls holding it (NaN: none)"),
    "memorization_ratio": (
        "fake_memorization_ratio", "nearest_real_dist over that real row's own nearest-other distance (memorization)",
    ),
}
REAL_ARRAYS = {
    "radius": ("real_radii", "k-NN radius within the real set, per k"),
    "covered": ("real_covered", "some fake row lies in the real row's ball, per k"),
    "recalled": ("real_recalled", "the real row lies in some fake row's ball, per k"),
    "nearest_fake_dist": ("real_nearest_dist", "distance to the nearest fake row"),
}
#: Arrays of companions that may be off: absent from the store then.
OPTIONAL = ("authentic", "rarity", "memorization_ratio")


def write_samples(result, path: str) -> None:
    """Write the per-row arrays of ``result`` as a zarr group at ``path``."""
    import zarr

    group = zarr.open_group(path, mode="w")
    group.attrs.update(
        {"k": list(result.params["k"]), "realism_k": result.params["k"][0], "metric": result.params["metric"]}
    )
    for side, arrays in (("fake", FAKE_ARRAYS), ("real", REAL_ARRAYS)):
        sub = group.create_group(side)
        for name, (attr, description) in arrays.items():
            values = getattr(result, attr, None)
            if values is None:  # a metric's per-row array, or a companion that was not computed
                values = result.rows.get(attr)
            if values is None:
                continue
            values = np.asarray(values)
            arr = sub.create_array(
                name, shape=values.shape, dtype=values.dtype, chunks=(CHUNK_ROWS,) + values.shape[1:]
            )
            arr[...] = values
            arr.attrs["description"] = description


#: What each table of ``largeemb worst`` is sorted by (its first value columns).
FAKE_ORDER = "ball_count, then realism (both ascending)"
REAL_ORDER = (
    "covered (uncovered first), rows with a zero radius after the others, then nearest_fake_dist / radius (descending)"
)


def read_samples(out: str) -> dict:
    import zarr

    path = os.path.join(out, SAMPLES_STORE)
    if not os.path.isdir(path):
        raise InputError(
            f"no {SAMPLES_STORE} found",
            f"in {out}",
            "point at the --out directory of a finished `largeemb evaluate` run (with per-sample values on)",
        )
    values, where = {}, "its group metadata"
    try:
        group = zarr.open_group(path, mode="r")
        for side, arrays in (("fake", FAKE_ARRAYS), ("real", REAL_ARRAYS)):
            for name in arrays:
                if name in OPTIONAL and name not in group[side]:  # a companion that may be off
                    continue
                where = f"{side}/{name}"
                values[where] = group[side][name][...]
        where = "the attribute k"
        values["k"] = list(group.attrs["k"])
    except (KeyError, FileNotFoundError, ValueError) as exc:
        raise InputError(
            f"{SAMPLES_STORE} lacks {where} or cannot be read ({type(exc).__name__})",
            f"in {out}",
            "rerun `largeemb evaluate` with per-sample values on (the default) to write it again",
        ) from None
    return values


def zero_radius_note(samples: dict) -> str | None:
    """Why copies rank last among the real rows, when there are any."""
    zero = int(((samples["real/radius"][:, 0] == 0) & ~samples["real/covered"][:, 0].astype(bool)).sum())
    if not zero:
        return None
    return (
        f"{zero} uncovered real rows have a zero radius (duplicates): under strict '<' their balls are empty, "
        "so they count as uncovered even with a fake row at distance 0 (--inclusive counts it); they are listed "
        "after the others"
    )


COPIES_ORDER = "nearest_real_dist (ascending), then row"


def copies(samples: dict, n: int) -> list[dict]:
    """The n closest fake-real pairs: fake rows by the distance to their nearest real row, ascending
    (exact copies first), with the memorisation ratio when it was computed."""
    dist = samples["fake/nearest_real_dist"]
    ratio = samples.get("fake/memorization_ratio")
    order = np.lexsort((np.arange(len(dist)), dist))[:n]
    out = []
    for j in order:
        row = {"row": int(j), "nearest_real": int(samples["fake/nearest_real"][j]), "nearest_real_dist": float(dist[j])}
        if ratio is not None:
            row["memorization_ratio"] = float(ratio[j]) if np.isfinite(ratio[j]) else None
        out.append(row)
    return out


def worst_rows(samples: dict, n: int) -> tuple[list[dict], list[dict]]:
    """The n fake rows least supported by the real set and the n real rows least covered.

    Fake rows rank by ball count (primary k), then realism score, both ascending.
    Real rows rank uncovered first, then by nearest-fake distance over radius, descending; rows with a
    zero radius (copies of k or more other rows) come after the others: under strict ``<`` their ball is
    empty, so they are uncovered whatever lies near them, and would otherwise fill the list.
    """
    counts = samples["fake/ball_count"][:, 0]
    realism = samples["fake/realism"]
    fake_order = np.lexsort((np.arange(len(counts)), realism, counts))[:n]
    fake = [
        {
            "row": int(j),
            "ball_count": int(counts[j]),
            "realism": float(realism[j]),
            "nearest_real": int(samples["fake/nearest_real"][j]),
            "nearest_real_dist": float(samples["fake/nearest_real_dist"][j]),
        }
        for j in fake_order
    ]
    radius = samples["real/radius"][:, 0]
    covered = samples["real/covered"][:, 0]
    nearest = samples["real/nearest_fake_dist"]
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.where(radius > 0, nearest / radius, np.inf)
    real_order = np.lexsort((np.arange(len(gap)), -gap, radius == 0, covered))[:n]
    real = [
        {
            "row": int(i),
            "covered": bool(covered[i]),
            "nearest_fake_dist/radius": float(gap[i]) if np.isfinite(gap[i]) else None,  # None: zero radius
            "nearest_fake_dist": float(nearest[i]),
            "radius": float(radius[i]),
        }
        for i in real_order
    ]
    return fake, real
