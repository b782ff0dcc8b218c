"""Streamed results must not depend on chunking, tiling, workers or input form."""

import dask.array as da
import numpy as np
import pytest
import zarr

import largeemb
from conftest import mixture, same_metrics


@pytest.fixture(scope="module")
def sets():
    return mixture(2311, 24, 1), mixture(1709, 24, 2, keep=5, shift=0.1)


@pytest.mark.slow
def test_identical_for_block_sizes_that_do_not_divide_rows(sets):
    real, fake = sets
    # The standard errors' invariance over block sizes is tests/test_standard_errors_engine.py's: left out here
    # (at 64-row blocks their longer neighbour lists made this the suite's slowest test). 100-row blocks: 24 and
    # 18 blocks, none dividing the rows (64-row blocks took 19 s of the suite, 100-row blocks 7 s).
    results = [
        largeemb.evaluate(real, fake, k=(5, 2), block_rows=b, standard_errors=False) for b in (100, 333, 1000, 4096)
    ]
    first = results[0].to_dict()
    for result in results[1:]:
        other = result.to_dict()
        assert same_metrics(other["metrics"], first["metrics"])  # identical, FD included
        assert other["by_k"] == first["by_k"]
        np.testing.assert_array_equal(result.real_radii, results[0].real_radii)
        np.testing.assert_array_equal(result.fake_counts, results[0].fake_counts)


def test_identical_for_store_chunks_and_worker_counts(sets, write_zarr):
    real, fake = sets
    base = largeemb.evaluate(real, fake, k=3).to_dict()["metrics"]
    for chunks, workers in (((100, 24), 1), ((777, 24), 2), ((2311, 24), 3)):
        real_path = write_zarr(f"real-{chunks[0]}.zarr", real, chunks=chunks)
        fake_path = write_zarr(f"fake-{chunks[0]}.zarr", fake, chunks=(min(chunks[0], 1709), 24))
        got = largeemb.evaluate(real_path, fake_path, k=3, block_rows=512, threads_per_worker=workers).to_dict()[
            "metrics"
        ]
        assert same_metrics(got, base)


def test_input_forms_agree(sets, write_zarr, tmp_path):
    real, fake = sets
    base = largeemb.evaluate(real, fake, k=3).metrics
    as_dask = largeemb.evaluate(da.from_array(real, chunks=500), da.from_array(fake, chunks=400), k=3).metrics
    v2 = largeemb.evaluate(write_zarr("r2.zarr", real, chunks=(300, 24), zarr_format=2), fake, k=3).metrics
    group = zarr.open_group(str(tmp_path / "group.zarr"), mode="w")
    group.create_array("embeddings", data=fake, chunks=(400, 24))
    group.create_array("labels", data=np.arange(len(fake)), chunks=(400,))
    grouped = largeemb.evaluate(real, str(tmp_path / "group.zarr"), k=3).metrics
    opened = largeemb.evaluate(zarr.open_array(write_zarr("r3.zarr", real)), fake, k=3).metrics
    assert all(same_metrics(got, base) for got in (as_dask, v2, grouped, opened))


def test_fsspec_memory_url(sets):
    real, fake = sets
    arr = zarr.create_array(
        "memory://largeemb-test/real.zarr", shape=real.shape, dtype=real.dtype, chunks=(500, 24), overwrite=True
    )
    arr[:] = real
    got = largeemb.evaluate("memory://largeemb-test/real.zarr", fake, k=3).metrics
    assert same_metrics(got, largeemb.evaluate(real, fake, k=3).metrics)


def test_float16_and_integer_stores_are_widened(write_zarr):
    real = mixture(1100, 8, 1)
    fake = mixture(1000, 8, 2)
    half = largeemb.evaluate(real.astype(np.float16), fake.astype(np.float16), k=3)
    assert same_metrics(
        half.metrics,
        largeemb.evaluate(
            real.astype(np.float16).astype(np.float64), fake.astype(np.float16).astype(np.float64), k=3
        ).metrics,
    )
    ints = largeemb.evaluate(np.round(real * 10).astype(np.int32), np.round(fake * 10).astype(np.int32), k=3)
    assert any("integer dtype" in w for w in ints.warnings)


@pytest.mark.parametrize("panel_rows", [64, 100, 700])
def test_identical_for_gemm_panel_sizes(sets, panel_rows):
    """The GEMM panel inside a block is a tuning knob: it must not change anything."""
    real, fake = sets
    base = largeemb.evaluate(real, fake, k=(3, 1), block_rows=1000)
    got = largeemb.evaluate(real, fake, k=(3, 1), block_rows=1000, panel_rows=panel_rows)
    assert got.params["panel_rows"] == panel_rows
    assert same_metrics(got.to_dict()["metrics"], base.to_dict()["metrics"])
    np.testing.assert_array_equal(got.real_radii, base.real_radii)
    np.testing.assert_array_equal(got.fake_radii, base.fake_radii)
    np.testing.assert_array_equal(got.fake_counts, base.fake_counts)


def test_default_block_size_grows_with_the_set():
    """Tasks grow with the square of the block count: large sets get larger blocks."""
    from largeemb.config import EvaluateConfig

    assert EvaluateConfig().resolved(20_000).block_rows == 4096
    assert EvaluateConfig().resolved(1_000_000).block_rows == 16_384
    # Explicit sizes are kept (within MAX_EXPLICIT_BLOCKS):
    assert EvaluateConfig(block_rows=8192).resolved(1_000_000).block_rows == 8192
    result = largeemb.evaluate(mixture(1100, 8, 1), mixture(1000, 8, 2), k=3)
    assert result.params["block_rows"] == 4096
