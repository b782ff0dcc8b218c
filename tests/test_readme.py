"""Every code block in the README runs.

Python blocks run in a directory holding the ``real.zarr`` and ``fake.zarr``
they name. The opening shell block (install, demo, tests) is what CI runs:
each of its commands must appear in ``.ci/run``, which runs them on a fresh
clone; the other shell blocks run here, in order, in one directory that also
holds ``real.npy`` and ``fake.npy`` (the quick start's files), with
``largeemb`` on PATH running this checkout's code.
"""

import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import mixture, zarr_store

ROOT = pathlib.Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall((ROOT / "README.md").read_text()) if lang == language]


def test_the_readme_has_code_blocks():
    assert blocks("bash") and blocks("python")


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_block_runs(index, tmp_path, monkeypatch):
    zarr_store(tmp_path / "real.zarr", mixture(600, 8, 1))
    zarr_store(tmp_path / "fake.zarr", mixture(550, 8, 2, keep=6))
    monkeypatch.chdir(tmp_path)
    code = blocks("python")[index]
    exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "readme"})


def _commands(block: str) -> list[str]:
    lines = [line.split("#")[0].strip() for line in block.splitlines()]
    return [part.strip() for line in lines if line for part in line.split("&&")]


def test_opening_block_is_what_ci_runs():
    opening = blocks("bash")[0]
    ci = (ROOT / ".ci" / "run").read_text()
    for command in _commands(opening):
        if command.startswith(("python -m venv", ". .venv")):
            continue  # CI makes its own venv
        assert command.split(" --out")[0] in ci, f"README command not run by CI: {command}"


@pytest.mark.slow
def test_other_shell_blocks_run(tmp_path):
    real, fake = mixture(600, 8, 1), mixture(550, 8, 2, keep=6)
    zarr_store(tmp_path / "real.zarr", real)
    zarr_store(tmp_path / "fake.zarr", fake)
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "fake.npy", fake)
    # `largeemb` runs this checkout's code, installed or not.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "largeemb").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m largeemb "$@"\n')
    (bin_dir / "largeemb").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{pathlib.Path(sys.executable).parent}:{os.environ['PATH']}"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    for block in blocks("bash")[1:]:
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, f"{block}\n{proc.stderr[-2000:]}"


def test_the_readme_stays_short():
    """The README is what a newcomer reads first: at most 3,500 words (`wc -w`); details go to
    OPERATIONS.md, ARCHITECTURE.md and BENCHMARKS.md."""
    words = len((ROOT / "README.md").read_text().split())
    assert words <= 3500, f"README.md has {words} words; move details to OPERATIONS.md"
