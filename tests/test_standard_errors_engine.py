"""The engine's standard errors (self pass: part radii; cross pass: split totals) equal the dense float64
reference of what the passes must collect: ``stderr.collect_dense`` on ``oracle.pairwise`` distances, then
``stderr.standard_errors``. Equality is exact (``==``): the same float64 distances, radii and masks give the
same sums. On Gaussian data, duplicate-heavy data (general float32 path, ties at 0) and a lattice (exact
tiles), strict and ``--inclusive``; whatever the blocks, panels, workers, screening; from a reference as
from its store; each of several fakes as alone.
"""

import json
import os

import numpy as np
import pytest

import largeemb
import oracle
from largeemb.batch import evaluate_all
from largeemb.kernels import parts, screen, tiles
from largeemb.kernels.stderr import collect_dense, standard_errors

K = (3, 5)
FAST = dict(plots=False, samples=False, companions=())


def data(name: str):
    rng = np.random.default_rng(4)
    if name == "lattice":  # every distance ties with many others; zero radii at small k
        return rng.integers(0, 3, (300, 3)).astype(np.float32), rng.integers(0, 3, (280, 3)).astype(np.float32)
    if name == "near-ties":  # tight clumps far from the centre: float32 cannot order the rows inside one
        centres = 30 * rng.standard_normal((40, 8))
        clump = lambda rows: centres[rng.integers(0, 40, rows)] + 3e-4 * rng.standard_normal((rows, 8))  # noqa: E731
        return clump(300).astype(np.float32), clump(280).astype(np.float32)
    if name == "float64":  # near-ties in float64 data (float64 rows gathered), some rows on the float32 grid
        centres = 30 * rng.standard_normal((40, 8))
        real, fake = (centres[rng.integers(0, 40, rows)] + 3e-4 * rng.standard_normal((rows, 8)) for rows in (300, 280))
        real[:128], fake[:128] = real[:128].astype(np.float32), fake[:128].astype(np.float32)
        return real, fake
    real = rng.standard_normal((300, 8)).astype(np.float32)
    fake = (1.1 * rng.standard_normal((280, 8)) + 0.1).astype(np.float32)
    if name == "duplicates":  # copies inside each set and across: zero distances, tied part radii
        real[250:300] = real[:50]
        fake[200:260] = fake[:60]
        fake[260:] = real[100:120]
    return real, fake


def dense(real, fake, ks, inclusive=False):
    """``{"both": {k: ses}, "given_real": {k: ses}}`` from the dense reference."""
    real, fake = real.astype(np.float64), fake.astype(np.float64)
    rr, ff, fr = oracle.pairwise(real, real), oracle.pairwise(fake, fake), oracle.pairwise(fake, real)
    out = {"both": {}, "given_real": {}}
    for k in ks:
        counts, real_parts, fake_parts, fake_counts = collect_dense(rr, ff, fr, k, inclusive=inclusive)
        se = standard_errors(counts, real_parts, fake_parts, k, fake_counts, oracle.prdc(real, fake, k, inclusive))
        out["both"][str(k)], out["given_real"][str(k)] = se["both"], se["given_real"]
    return out


def engine(result) -> dict:
    doc = result.to_dict()
    return {"both": doc["standard_errors"], "given_real": doc["standard_errors_given_real"]}


@pytest.mark.parametrize("name", ["gaussian", "duplicates", "near-ties", "float64", "lattice"])
@pytest.mark.parametrize("inclusive", [False, True])
def test_equal_to_the_dense_reference(name, inclusive, monkeypatch):
    monkeypatch.setattr(tiles, "TILE_COST", 0.0)  # grouped tiles wherever the data has groups, even this small
    monkeypatch.setattr(tiles, "SAMPLES_TILE_COST", 0.0)
    real, fake = data(name)
    ks = (1, 3) if name == "lattice" else K
    options = dict(FAST, samples=name == "gaussian")  # per-sample values change how the cross pass tiles
    got = largeemb.evaluate(real, fake, k=ks, inclusive=inclusive, block_rows=128, panel_rows=64, **options)
    assert engine(got) == dense(real, fake, ks, inclusive)


def test_rows_whose_lists_are_short_get_exact_part_radii_from_the_float64_pass(monkeypatch):
    """Lists of k + 2 rows leave most quarters short: the float64 pass (several widening rounds) serves them."""
    real, fake = data("duplicates")
    monkeypatch.setattr(parts, "listed_size", lambda k: k + 2)
    got = largeemb.evaluate(real, fake, k=K, block_rows=128, panel_rows=64, **FAST)
    assert engine(got) == dense(real, fake, K)


def test_bf16_screening_changes_nothing(monkeypatch):
    monkeypatch.setattr(screen, "MIN_SCREEN_ENTRIES", 0)  # the small tiles here are screened too
    real, fake = data("duplicates")
    options = dict(k=K, block_rows=128, panel_rows=64, **FAST)
    got = largeemb.evaluate(real, fake, precision="bf16-emulated", **options)
    assert got.to_dict()["details"]["screening"]["cross"]["entries"] > 0
    assert engine(got) == engine(largeemb.evaluate(real, fake, precision="float32", **options)) == dense(real, fake, K)


@pytest.mark.slow
@pytest.mark.parametrize("options", [
    dict(block_rows=64), dict(block_rows=100, panel_rows=64), dict(block_rows=1000), dict(prune=False),
    dict(block_rows=128, threads_per_worker=2), dict(block_rows=128, workers=2),
])
def test_invariant_over_blocks_panels_and_workers(options, tmp_path):
    paths = [str(tmp_path / "real.npy"), str(tmp_path / "fake.npy")]  # worker processes read them by path
    for path, rows in zip(paths, data("duplicates")):
        np.save(path, rows)
    base = engine(largeemb.evaluate(*paths, k=K, **FAST))
    assert engine(largeemb.evaluate(*paths, k=K, **options, **FAST)) == base


def test_sets_too_small_to_split_say_so():
    rng = np.random.default_rng(1)
    got = largeemb.evaluate(rng.standard_normal((40, 3)), rng.standard_normal((23, 3)), k=5, **FAST).to_dict()
    assert "5" not in got["standard_errors"] and "standard_errors_given_real" not in got
    assert [w for w in got["warnings"] if "quarter of each set" in w]
    off = largeemb.evaluate(rng.standard_normal((40, 3)), rng.standard_normal((23, 3)), k=5, standard_errors=False,
                            **FAST).to_dict()
    assert not [w for w in off["warnings"] if "quarter of each set" in w]  # not asked for: nothing to excuse


def test_turned_off_they_are_left_out_and_the_metrics_unchanged():
    """--no-standard-errors: no split SEs of precision, recall, density, coverage; the same metrics."""
    real, fake = data("duplicates")
    on = largeemb.evaluate(real, fake, k=K, **FAST)
    off = largeemb.evaluate(real, fake, k=K, standard_errors=False, **FAST)
    doc = off.to_dict()
    assert not any(str(k) in doc["standard_errors"] for k in K) and "standard_errors_given_real" not in doc
    assert off.metrics == on.metrics and off.by_k == on.by_k and doc["params"]["standard_errors"] is False


@pytest.mark.slow
def test_a_reference_gives_the_standard_errors_of_its_store(write_zarr, tmp_path):
    real, fake = data("duplicates")
    store = write_zarr("real", real)
    ref = str(tmp_path / "ref")
    largeemb.build_reference(store, ref, k=(5, 3), block_rows=128)
    options = dict(k=K, block_rows=128, **FAST)
    assert engine(largeemb.evaluate(ref, fake, **options)) == engine(largeemb.evaluate(store, fake, **options))


@pytest.mark.slow
def test_an_older_reference_says_so_and_the_run_goes_on(write_zarr, tmp_path):
    real, fake = data("gaussian")
    ref = str(tmp_path / "ref")
    largeemb.build_reference(write_zarr("real", real), ref, k=(5,), block_rows=128)
    with open(os.path.join(ref, "reference.json")) as fh:
        meta = json.load(fh)
    meta.pop("split_k")  # as version 1 wrote it
    with open(os.path.join(ref, "reference.json"), "w") as fh:
        json.dump(meta, fh)
    got = largeemb.evaluate(ref, fake, k=(5,), **FAST).to_dict()
    assert "5" not in got["standard_errors"] and "standard_errors_given_real" not in got
    assert [w for w in got["warnings"] if "reference build --force" in w]
    assert got["by_k"]["5"] == largeemb.evaluate(real, fake, k=(5,), **FAST).to_dict()["by_k"]["5"]


@pytest.mark.slow
def test_each_of_several_fakes_as_alone(tmp_path):
    real, fake = data("duplicates")
    paths = {name: str(tmp_path / f"{name}.npy") for name in ("real", "a", "b")}
    np.save(paths["real"], real)
    np.save(paths["a"], fake)
    np.save(paths["b"], fake[::-1] + np.float32(0.2))
    options = dict(k=K, block_rows=128, plots=False)
    outcome = evaluate_all(paths["real"], [paths["a"], paths["b"]], str(tmp_path / "all"), **options)
    for run, name in zip(outcome.runs, ("a", "b")):
        alone = largeemb.evaluate(paths["real"], paths[name], **options).to_dict()
        for key in ("standard_errors", "standard_errors_given_real"):
            assert run.document[key] == alone[key], (name, key)
