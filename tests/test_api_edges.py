"""The Python API's edges: a short repr, k as a string, a clear error for plots that were not made,
and error lines that name the keyword a Python caller passes (force=True)."""

import numpy as np
import pytest

import largeemb
from largeemb.errors import InputError
from largeemb.report import write_plots


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(2)
    return rng.standard_normal((500, 6)).astype(np.float32), (rng.standard_normal((450, 6)) + 0.2).astype(np.float32)


def test_a_result_prints_as_one_short_line(pair):
    result = largeemb.evaluate(*pair, k=(5, 3), plots=False, samples=False)
    text = repr(result)
    assert "\n" not in text and len(text) < 200
    by_k = result.by_k[5]
    assert f"precision {by_k['precision']:.4g}" in text and f"fd {result.metrics['fd']:.4g}" in text and "k=5" in text


def test_k_as_a_string_is_read_as_on_the_command_line(pair):
    assert largeemb.evaluate(*pair, k="3,5", plots=False, samples=False).params["k"] == [3, 5]
    with pytest.raises(InputError, match=r"k must be whole numbers, got '3,x'.*k=\(3, 5, 10\)"):
        largeemb.evaluate(*pair, k="3,x", plots=False)


def test_write_plots_without_plot_data_says_so(pair, tmp_path):
    result = largeemb.evaluate(*pair, plots=False, samples=False)
    with pytest.raises(InputError, match="no plot data.*plots=False.*plots=True"):
        write_plots(result, str(tmp_path / "figures"))
    assert not (tmp_path / "figures").exists()


def test_an_existing_result_names_force_for_python_callers(pair, tmp_path):
    largeemb.evaluate_to(*pair, str(tmp_path / "o"), plots=False)
    with pytest.raises(InputError, match=r"force=True"):
        largeemb.evaluate_to(*pair, str(tmp_path / "o"), plots=False)


def test_a_reference_given_as_fake_is_named_and_demo_runs_twice(tmp_path, write_zarr):
    from typer.testing import CliRunner

    from largeemb.cli import app

    rng = np.random.default_rng(4)
    real = write_zarr("real", rng.standard_normal((400, 4)).astype(np.float32))
    fake = write_zarr("fake", rng.standard_normal((400, 4)).astype(np.float32))
    ref = str(tmp_path / "ref")
    largeemb.build_reference(real, ref, k=(5,))
    with pytest.raises(InputError, match="is a largeemb reference.*pass the reference first, as REAL"):
        largeemb.evaluate(fake, ref)
    info = largeemb.io.reference.load_reference(ref, open_store=False).info()
    assert info["k"] == sorted(info["k"]) and info["k_for_companions"] == [1, 4, 9]
    runner = CliRunner()
    for _ in range(2):  # the demo may replace its own earlier output
        result = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--rows", "300", "--dim", "8"])
        assert result.exit_code == 0, result.output


def test_warnings_reach_python_callers_as_warnings_and_the_cli_once(pair, tmp_path):
    from typer.testing import CliRunner

    from largeemb.cli import app
    from largeemb.errors import LargeembWarning

    real, fake = pair
    copies = np.concatenate([real[:50]] * 6 + [real[50:]])  # six copies of 50 rows: zero radii at k = 5
    with pytest.warns(LargeembWarning, match="zero k-NN radius"):
        result = largeemb.evaluate(copies, fake, plots=False, samples=False)
    assert any("zero k-NN radius" in line for line in result.warnings)
    np.save(tmp_path / "real.npy", copies)
    np.save(tmp_path / "fake.npy", fake)
    cli = CliRunner().invoke(app, ["evaluate", str(tmp_path / "real.npy"), str(tmp_path / "fake.npy"), "--out",
                                   str(tmp_path / "o"), "--no-plots"])
    assert cli.exit_code == 0 and cli.output.count("zero k-NN radius") == 1 and "LargeembWarning" not in cli.output


def test_show_progress_prints_progress_where_a_notebook_shows_it(pair, capsys):
    largeemb.show_progress()
    try:
        largeemb.evaluate(*pair, plots=False, samples=False)
        assert "largeemb: radii:" in capsys.readouterr().err
    finally:
        largeemb.show_progress(False)
    largeemb.evaluate(*pair, plots=False, samples=False)
    assert "largeemb: radii:" not in capsys.readouterr().err
