"""report.html: one self-contained page per result, checked as text and in a real headless browser.

The browser test needs Debian's ``chromium`` (``apt-get install -y --no-install-recommends chromium``,
as .ci/run does); it skips, saying so, where no such browser is installed.
"""

import base64
import json
import os
import re
import shutil
import struct
import subprocess

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import mixture, nightly_result
from largeemb.cli import app
from largeemb.report.page import REPORT_FILE, write_report

runner = CliRunner()
CORE = ("precision", "recall", "density", "coverage")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    """A result with every figure (two k: k_sweep.png too) and samples.zarr, and its report."""
    out = tmp_path_factory.mktemp("report") / "step-42"
    doc = nightly_result(
        out, mixture(600, 8, 0), mixture(600, 8, 1, keep=5), label="step-42", k=(3, 5), tsne_samples=150,
        plot_samples=300,
    )
    write_report(str(out))
    return str(out), doc


def page_of(directory) -> str:
    with open(os.path.join(directory, REPORT_FILE), encoding="utf-8") as fh:
        return fh.read()


def doc_of(directory) -> dict:
    with open(os.path.join(directory, "metrics.json")) as fh:
        return json.load(fh)


def png_size(path) -> tuple[int, int]:
    """Width and height from the PNG header (IHDR), independent of any image library."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.mark.slow
def test_the_report_is_one_self_contained_file_with_the_numbers(result):
    directory, doc = result
    page = page_of(directory)
    assert not re.search(r"https?://|<link|<script|@import|url\(", page)  # nothing fetched from anywhere
    sources = re.findall(r'<img src="([^"]*)"', page)
    pngs = sorted(name for name in os.listdir(directory) if name.endswith(".png"))
    assert {"pca.png", "tsne.png", "k_sweep.png", "ball_counts.png"} <= set(pngs) and len(sources) == len(pngs)
    for name in pngs:  # each figure of the directory, byte for byte
        with open(os.path.join(directory, name), "rb") as fh:
            assert f"data:image/png;base64,{base64.b64encode(fh.read()).decode()}" in sources
    values = doc["by_k"]["3"]
    assert f"P {values['precision']:.3f}±" in page
    for name in CORE:
        for number in (values[name], doc["standard_errors"]["3"][name], doc["standard_errors_given_real"]["3"][name]):
            assert f">{number:.4f}<" in page
    assert f">{doc['metrics']['fd']:.4f}<" in page and "step-42" in page and doc["real"]["fingerprint"] in page
    worst = json.loads(runner.invoke(app, ["worst", directory, "--n", "10", "--json"]).stdout)
    for side in ("fake", "real"):  # the rows `largeemb worst` lists, in its order
        rows = [row["row"] for row in worst[side]]
        cells = [
            int(m)
            for m in re.findall(
                r"<tr><td class=\"num\">(\d+)</td>",
                page.split(f"least {'supported' if side == 'fake' else 'covered'}")[1],
            )[:10]
        ]
        assert cells == rows


def test_report_command_writes_and_refuses_what_is_no_result(tmp_path):
    out = tmp_path / "metrics-only"
    nightly_result(out, mixture(300, 8, 0), mixture(300, 8, 1), k=5, plots=False)
    written = runner.invoke(app, ["report", str(out)])
    assert written.exit_code == 0, written.output
    page = page_of(out)
    assert "No figures in this result" in page and "Real rows least covered" in page and "<img" not in page
    assert runner.invoke(app, ["report", str(out)]).exit_code == 0  # rewritten
    assert sorted(os.listdir(out)) == ["metrics.json", REPORT_FILE, "samples.zarr"]  # no lock or staging left
    staged = tmp_path / ".staging-x"  # as evaluate_to calls it: files in staging, named by the final directory
    shutil.copytree(out, staged)
    os.remove(staged / REPORT_FILE)
    assert write_report(str(tmp_path / "final"), doc_of(out), into=str(staged)) == str(staged / REPORT_FILE)
    page = page_of(staged)
    assert str(tmp_path / "final") in page and ".staging-x" not in page and "Real rows least covered" in page
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = runner.invoke(app, ["report", str(empty)])
    assert (
        refused.exit_code == 2
        and refused.stderr.startswith("error: no largeemb result found")
        and os.listdir(empty) == []
    )


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


#: Appended to a copy of the page: once everything loaded, write what each image decoded to into the DOM.
PROBE = """<script>window.addEventListener('load', () => { const out = document.createElement('pre'); out.id = 'probe';
out.textContent = JSON.stringify([...document.images].map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight]));
document.body.appendChild(out); });</script>"""


def browse(tmp_path, page: str, *flags) -> subprocess.CompletedProcess:
    path = tmp_path / "page.html"
    path.write_text(page, encoding="utf-8")
    command = [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--log-level=3", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", *flags, path.as_uri()]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(chromium() is None, reason="no chromium here (apt-get install -y --no-install-recommends chromium)")
def test_the_report_in_a_headless_browser(result, tmp_path):
    directory, doc = result
    page = page_of(directory)
    dom = browse(tmp_path, page.replace("</body>", PROBE + "</body>"), "--dump-dom").stdout
    values = doc["by_k"]["3"]
    for name in CORE:
        assert f">{values[name]:.4f}<" in dom  # the numbers are on the rendered page
    probe = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dom).group(1))
    pngs = sorted(name for name in os.listdir(directory) if name.endswith(".png"))
    assert sorted(alt for alt, *_ in probe) == pngs
    for alt, complete, width, height in probe:  # every image decoded at its file's own size
        assert complete and (width, height) == png_size(os.path.join(directory, alt))

    shot = tmp_path / "shot.png"
    browse(tmp_path, page, f"--screenshot={shot}", "--window-size=1280,2400")
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape == (2400, 1280, 3)
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    assert colours > 500 and (pixels < 128).mean() > 0.005  # text and figures drawn, not a blank page
