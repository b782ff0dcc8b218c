"""Figures: pure plot functions, the plot stage of `largeemb evaluate`, and `largeemb plot`."""

import json

import matplotlib.image
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import cli_evaluate
from largeemb import api
from largeemb.cli import app
from largeemb.report import captions
from largeemb.report import figures as plots
from largeemb.report import stage as report

runner = CliRunner()
FIGURES = ("pca.png", "tsne.png", "k_sweep.png", "ball_counts.png")


def test_backend_is_agg_and_plot_functions_draw_into_a_given_ax():
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    real, fake = rng.standard_normal((50, 2)), rng.standard_normal((40, 2)) + 1
    fig, axes = plt.subplots(1, 4)
    assert plots.pca_figure(real, fake, real_radii=np.full(50, 0.3), ax=axes[0]) is fig
    assert plots.tsne_figure(real, fake, ax=axes[1]) is fig
    by_k = {
        3: dict(precision=0.9, recall=0.8, density=1.1, coverage=0.7),
        5: dict(precision=0.95, recall=0.85, density=1.0, coverage=0.8),
    }
    assert plots.k_sweep_figure([3, 5], by_k, ax=axes[2]) is fig
    assert plots.ball_count_figure([3, 5], np.array([[5, 20, 15], [2, 18, 20]]), ax=axes[3]) is fig
    assert plt.get_backend().lower() == "agg"
    plt.close(fig)


def test_backdrop_figure_crops_to_the_rows_and_labels_everything():
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((20_000, 2))
    edges = np.linspace(-30, 30, 301)
    counts, _, _ = np.histogram2d(rows[:, 0], rows[:, 1], bins=(edges, edges))
    fig = plots.pca_figure(
        rows[:100], rows[100:200], real_radii=np.full(10, 0.5), x_edges=edges, y_edges=edges,
        real_counts=counts.astype(int), fake_counts=counts.astype(int), axis_labels=("PC 1 (x)", "PC 2 (y)"),
        caption="note",
    )
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    assert -8 < low < -3 and 3 < high < 8  # not the whole ±30 binned range
    assert ax.get_xlabel() == "PC 1 (x)" and ax.get_legend() is not None
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("fake density" in t for t in labels) and any("radius" in t for t in labels)
    plots.save(fig, "/dev/null")


def synth_pair(tmp_path, real_rows=1500, fake_rows=1200):
    real, fake = str(tmp_path / "r.zarr"), str(tmp_path / "f.zarr")
    assert runner.invoke(app, ["synth", real, "--rows", str(real_rows), "--dim", "8"]).exit_code == 0
    synth_fake = ["synth", fake, "--rows", str(fake_rows), "--dim", "8", "--seed", "3", "--shift", "0.2"]
    synth_fake += ["--drop-modes", "2"]
    assert runner.invoke(app, synth_fake).exit_code == 0
    return real, fake


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    real, fake = synth_pair(tmp)
    out = tmp / "out"
    result = cli_evaluate(real, fake, out, "--k", "3,5", "--tsne-samples", "250", "--plot-samples", "300")
    assert result.exit_code == 0, result.output
    return out


def pixels(path):
    return matplotlib.image.imread(str(path))


def test_evaluate_writes_every_figure_and_the_plot_data(run_dir):
    for name in FIGURES:
        image = pixels(run_dir / name)
        assert image.shape[0] >= 600 and image.shape[1] >= 900  # readable size
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["params"]["tsne_samples"] == 250 and metrics["params"]["pca"] == "moments"
    assert {"projection", "tsne", "plots"} <= set(metrics["timings_s"])
    data, _ = report.load_run(str(run_dir))
    # More rows than --plot-samples: a backdrop of every row, a subsample on top.
    assert data["real_counts"].sum() + data["real_outside"] == 1500
    assert data["fake_counts"].sum() + data["fake_outside"] == 1200
    assert len(data["real_plot_coords"]) == 300 and len(data["real_tsne_coords"]) == 250
    assert data["ball_counts"].shape[0] == 2 and data["ball_counts"][0].sum() == 1200
    assert not list(run_dir.glob(".staging-*"))


@pytest.mark.slow
def test_plot_command_reproduces_the_figures(run_dir, tmp_path):
    before = {name: pixels(run_dir / name) for name in FIGURES}
    again = tmp_path / "again"
    result = runner.invoke(app, ["plot", str(run_dir), "--out", str(again)])
    assert result.exit_code == 0, result.output
    for name in FIGURES:
        np.testing.assert_array_equal(pixels(again / name), before[name])
    refused = runner.invoke(app, ["plot", str(run_dir), "--out", str(again)])
    assert refused.exit_code == 2 and "--force" in refused.output
    assert runner.invoke(app, ["plot", str(run_dir), "--out", str(again), "--force"]).exit_code == 0
    (run_dir / "pca.png").unlink()
    assert runner.invoke(app, ["plot", str(run_dir)]).exit_code == 0
    np.testing.assert_array_equal(pixels(run_dir / "pca.png"), before["pca.png"])


def test_plot_command_refuses_a_directory_without_a_run(tmp_path):
    result = runner.invoke(app, ["plot", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.startswith("error:") and "no largeemb result" in result.output
    assert len(result.output.strip().splitlines()) == 1
    missing = runner.invoke(app, ["plot", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "error:" in missing.output


def test_small_sets_draw_every_point_and_no_plots_leaves_no_stale_figures(tmp_path):
    real, fake = synth_pair(tmp_path, 400, 300)
    out = tmp_path / "out"
    first = cli_evaluate(real, fake, out, "--k", "3,5", "--tsne-samples", "0")
    assert first.exit_code == 0, first.output
    data, _ = report.load_run(str(out))
    assert len(data["real_plot_coords"]) == 400 and len(data["fake_plot_coords"]) == 300
    np.testing.assert_array_equal(data["real_plot_index"], np.arange(400))
    assert (out / "pca.png").exists() and (out / "k_sweep.png").exists() and not (out / "tsne.png").exists()
    again = cli_evaluate(real, fake, out, "--no-plots", "--force")
    assert again.exit_code == 0, again.output
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "report.html", "samples.zarr"]
    refused = runner.invoke(app, ["plot", str(out)])
    assert refused.exit_code == 2 and "--no-plots" in refused.output


def test_bad_plot_options_are_one_line_errors(tmp_path):
    real, fake = synth_pair(tmp_path, 300, 300)
    result = cli_evaluate(real, fake, tmp_path / "o", "--pca", "svd")
    assert result.exit_code == 2 and result.output.startswith("error:") and "incremental" in result.output
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_a_failing_plot_stage_keeps_the_metrics(tmp_path, monkeypatch):
    real, fake = synth_pair(tmp_path, 300, 300)

    def broken(result, directory):
        raise RuntimeError("no fonts")

    monkeypatch.setattr(api, "write_plots", broken)  # the plot stage evaluate_to calls
    result = cli_evaluate(real, fake, tmp_path / "o", "--tsne-samples", "0")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert any("plots failed" in w and "no fonts" in w for w in metrics["warnings"])


def test_one_dimensional_sets_still_plot(tmp_path):
    import largeemb

    rng = np.random.default_rng(2)
    result = largeemb.evaluate(
        rng.standard_normal((300, 1)), rng.standard_normal((250, 1)) + 0.5, k=3, tsne_samples=100
    )
    written = report.write_plots(result, str(tmp_path))
    assert {"pca.png", "tsne.png", "projection.npz"} <= set(written.files)


@pytest.mark.slow
def test_default_tsne_keeps_each_dropped_mode_a_real_only_cluster():
    """On the demo's data (10 modes, fake shifted by 0.05 without the last 3), with the
    default subsample size and t-SNE settings, rows of the dropped modes sit among real rows."""
    from sklearn.neighbors import NearestNeighbors

    from largeemb.cli import DEMO_DIM
    from largeemb.config import EvaluateConfig
    from largeemb.io.synth import DEFAULT_CHUNK_ROWS, mode_centres, synth_rows
    from largeemb.report.tsne import tsne

    n = EvaluateConfig().tsne_samples
    real = synth_rows(0, n, DEMO_DIM, 0, 0.0, 10, 0, DEFAULT_CHUNK_ROWS)  # the demo's real.zarr rows
    fake = synth_rows(0, n, DEMO_DIM, 1, 0.05, 10, 3, DEFAULT_CHUNK_ROWS)  # and fake.zarr's
    rows = np.concatenate([real, fake])
    centred = rows - real.mean(axis=0)
    axes = np.linalg.svd(centred[:n], full_matrices=False)[2][:2]
    embedding = tsne(rows, centred @ axes.T, seed=0)
    centres = mode_centres(DEMO_DIM, 10)
    mode = np.argmin(((real[:, None, :] - centres[None]) ** 2).sum(axis=2), axis=1)
    dropped = np.flatnonzero(mode >= 7)
    assert len(dropped) > 0.2 * n
    _, neighbours = NearestNeighbors(n_neighbors=11).fit(embedding).kneighbors(embedding[dropped])
    real_share = (neighbours[:, 1:] < n).mean(axis=1)
    assert real_share.mean() >= 0.95 and np.quantile(real_share, 0.05) >= 0.9, np.quantile(real_share, [0, 0.05, 0.5])


def test_figures_say_what_they_show_and_keep_the_data_clear(run_dir):
    data, metrics = report.load_run(str(run_dir))
    pca = captions.captioned_pca(data, metrics)
    ax = pca.axes[0]
    assert all(name in ax.get_title() for name in ("precision", "recall", "density", "coverage"))
    circles = [c for c in ax.collections if type(c).__name__ == "EllipseCollection"]
    assert sum(len(c.get_offsets()) for c in circles) <= captions.CIRCLES_SHOWN  # not one per row
    renderer = pca.canvas.get_renderer()
    legend, frame = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
    assert legend.y1 <= frame.y0 + 1  # below the axes, never over the data

    sweep = captions.captioned_k_sweep(metrics).axes[0]
    sweep_title = sweep.get_title().replace("\n", " ")  # long titles wrap
    assert "1,500 rows" in sweep_title and "1,200 rows" in sweep_title and "euclidean" in sweep_title
    assert len(sweep.containers) == 4 and all(c.has_yerr for c in sweep.containers)  # ±1 SE from metrics.json

    tsne = captions.captioned_tsne(data, metrics).axes[0]
    assert not len(tsne.get_xticks()) and not len(tsne.get_yticks())
    for fig in (pca, sweep.figure, tsne.figure):
        plots.save(fig, "/dev/null")


def test_ball_count_bins_merge_runs_of_empty_ranges():
    counts = np.zeros((1, 301), dtype=int)
    counts[0, [0, 1, 2, 3, 300]] = [50, 30, 10, 5, 1]  # nothing between 4 and 299
    fig = plots.ball_count_figure([5], counts)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["0", "1", "2", "3-4", "5-256", "257-300"]
    plots.save(fig, "/dev/null")


def test_ball_counts_avoid_the_real_and_fake_colours_and_long_titles_wrap():
    from matplotlib.colors import to_rgba

    from largeemb.report import figures

    fig = figures.ball_count_figure([3, 5, 10], np.array([[5, 3, 2, 0], [2, 4, 3, 1], [1, 2, 4, 3]]))
    bar_colours = {patch.get_facecolor() for patch in fig.axes[0].patches}
    assert len(bar_colours) == 3 and not bar_colours & {to_rgba(figures.REAL_COLOUR), to_rgba(figures.FAKE_COLOUR)}
    title = "Metrics against k: real " + "a-very-long-store-name " * 6 + "vs fake another-long-name, euclidean"
    fig = figures.k_sweep_figure([3, 5], {3: dict.fromkeys(("precision", "recall", "density", "coverage"), 0.5),
                                          5: dict.fromkeys(("precision", "recall", "density", "coverage"), 0.6)},
                                 title=title)
    shown = fig.axes[0].get_title()
    assert shown.replace("\n", " ") == title and all(len(line) <= figures.TITLE_WIDTH for line in shown.split("\n"))


@pytest.mark.slow
def test_plot_writes_svg_and_pdf_at_a_chosen_dpi(tmp_path):
    real, fake = str(tmp_path / "r.zarr"), str(tmp_path / "f.zarr")
    runner.invoke(app, ["synth", real, "--rows", "400", "--dim", "8"])
    runner.invoke(app, ["synth", fake, "--rows", "300", "--dim", "8", "--seed", "2"])
    out = tmp_path / "o"
    made = runner.invoke(app, ["evaluate", real, fake, "--out", str(out), "--k", "3,5", "--tsne-samples", "0"])
    assert made.exit_code == 0
    svg = runner.invoke(app, ["plot", str(out), "--out", str(tmp_path / "svg"), "--format", "svg"])
    assert svg.exit_code == 0, svg.output
    assert sorted(p.name for p in (tmp_path / "svg").iterdir()) == ["ball_counts.svg", "k_sweep.svg", "pca.svg"]
    assert (tmp_path / "svg" / "pca.svg").read_text().lstrip().startswith("<?xml")
    assert runner.invoke(app, ["plot", str(out), "--out", str(tmp_path / "pdf"), "--format", "pdf"]).exit_code == 0
    assert (tmp_path / "pdf" / "pca.pdf").read_bytes().startswith(b"%PDF")
    low, high = (
        runner.invoke(app, ["plot", str(out), "--out", str(tmp_path / f"d{d}"), "--dpi", str(d)]) for d in (50, 200)
    )
    assert low.exit_code == 0 and high.exit_code == 0
    from PIL import Image

    widths = [Image.open(tmp_path / f"d{d}" / "pca.png").size[0] for d in (50, 200)]
    assert widths[1] == pytest.approx(4 * widths[0], rel=0.02)
    bad = runner.invoke(app, ["plot", str(out), "--format", "gif"])
    assert bad.exit_code == 2 and "png, svg, pdf" in bad.output


def test_radius_circles_are_drawn_only_where_readable_and_the_caption_agrees():
    from matplotlib.collections import EllipseCollection

    from largeemb.report import figures

    rng = np.random.default_rng(3)
    real, fake = rng.standard_normal((900, 2)), rng.standard_normal((900, 2))
    note = "Black circles: the radius of {drawn} random real points."
    for radii, drawn in ((np.full(5, 3.0), 0), (np.array([0.1, 0.2, 0.15, 9.0, 0.1]), 4)):
        fig = figures.pca_figure(real, fake, real_radii=radii, caption="All rows. [circles] Basis: exact PCA.",
                                 circles_note=note)
        circles = [c for c in fig.axes[0].collections if isinstance(c, EllipseCollection)]
        caption = " ".join(t.get_text() for t in fig.texts)
        assert len(circles[0].get_offsets()) == drawn if drawn else not circles
        assert ("Black circles" in caption) == bool(drawn) and "[circles]" not in caption
        labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert any(("not drawn" in label) != bool(drawn) for label in labels if "radi" in label)


@pytest.mark.slow
def test_plot_of_several_runs_overlays_their_fakes_on_one_basis(tmp_path):
    from largeemb.report import figures
    from largeemb.report.overlay import draw_overlay

    rng = np.random.default_rng(5)
    np.save(tmp_path / "real.npy", rng.standard_normal((600, 6)).astype(np.float32))
    for i, shift in enumerate((0.0, 0.8)):
        np.save(tmp_path / f"f{i}.npy", (rng.standard_normal((500, 6)) + shift).astype(np.float32))
    runs = [str(tmp_path / "o" / f"f{i}") for i in range(2)]
    made = runner.invoke(app, ["evaluate", str(tmp_path / "real.npy"), str(tmp_path / "f0.npy"),
                               str(tmp_path / "f1.npy"), "--out", str(tmp_path / "o"), "--tsne-samples", "0"])
    assert made.exit_code == 0, made.output
    drawn = []
    real_fig = figures.overlay_figure

    def recording(real_coords, fakes, **kwargs):
        drawn.append((real_coords, fakes))
        return real_fig(real_coords, fakes, **kwargs)

    figures.overlay_figure = recording
    try:
        draw_overlay(runs, str(tmp_path / "ov"))
    finally:
        figures.overlay_figure = real_fig
    (real_coords, fakes), = drawn
    for run, (label, coords) in zip(runs, fakes):
        with np.load(f"{run}/projection.npz") as saved:
            np.testing.assert_array_equal(coords, saved["fake_plot_coords"])
        assert label == run.rsplit("/", 1)[-1]
    assert (tmp_path / "ov" / "overlay.png").is_file()
    again = runner.invoke(app, ["plot", *runs, "--out", str(tmp_path / "ov")])
    assert again.exit_code == 2 and "--force" in again.output
    coarse = runner.invoke(app, ["plot", *runs, "--out", str(tmp_path / "ov3"), "--dpi", "5"])
    assert coarse.exit_code == 2 and "--dpi 5 is out of range" in coarse.output
    other = tmp_path / "other"
    np.save(tmp_path / "real2.npy", rng.standard_normal((600, 6)).astype(np.float32))
    assert runner.invoke(app, ["evaluate", str(tmp_path / "real2.npy"), str(tmp_path / "f0.npy"), "--out", str(other),
                               "--tsne-samples", "0"]).exit_code == 0
    refused = runner.invoke(app, ["plot", runs[0], str(other), "--out", str(tmp_path / "ov2")])
    assert refused.exit_code == 2 and "different real sets" in refused.output
