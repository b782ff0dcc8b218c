"""The cluster templates in jobs/: they parse, pass `bash -n` (and shellcheck when
installed), state their parameters at the top, and use only options that exist."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from largeemb.cli import app
from largeemb.io.objectstore import STAGING_ENV

ROOT = Path(__file__).parents[1]
JOBS = ROOT / "jobs"
TEMPLATES = sorted(p for p in JOBS.rglob("*") if p.is_file() and p.name != "README.md")
YAMLS = [p for p in TEMPLATES if p.suffix in (".yaml", ".yml")]
SCRIPTS = [p for p in TEMPLATES if p.read_text().startswith("#!/bin/bash")]


def _names(paths):
    return [str(p.relative_to(JOBS)) for p in paths]


def test_the_templates_are_there():
    assert {"slurm", "kubernetes", "nightly"} <= {p.parent.name for p in TEMPLATES}
    assert YAMLS and SCRIPTS


@pytest.mark.parametrize("path", TEMPLATES, ids=_names(TEMPLATES))
def test_parameters_and_command_are_stated_at_the_top(path):
    header = "\n".join(path.read_text().splitlines()[:30])
    assert "Parameters" in header
    assert "largeemb evaluate" in header


@pytest.mark.parametrize("path", SCRIPTS, ids=_names(SCRIPTS))
def test_shell_scripts_parse(path):
    subprocess.run(["bash", "-n", str(path)], check=True)
    shellcheck = shutil.which("shellcheck")
    if shellcheck:
        result = subprocess.run([shellcheck, "--shell=bash", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("path", YAMLS, ids=_names(YAMLS))
def test_kubernetes_manifests(path):
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert docs
    for doc in docs:
        assert doc["apiVersion"] == "batch/v1" and doc["kind"] in ("Job", "CronJob")
        job = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
        pod = job["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        for container in pod["containers"]:
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            command = " ".join(container["command"] + container.get("args", []))
            assert "largeemb" in command or ".sh" in command
            defined = {env["name"] for env in container.get("env", [])}
            assert set(re.findall(r"\$\((\w+)\)", command)) <= defined  # Kubernetes expands $(VAR) from env
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in {volume["name"] for volume in pod["volumes"]}


def test_nightly_builds_the_reference_then_evaluates_the_backlog():
    script = (JOBS / "nightly" / "nightly-evaluate.sh").read_text()
    assert script.index("largeemb reference build") < script.index("largeemb evaluate")
    assert "nightly-evaluate.sh" in (JOBS / "nightly" / "cronjob.yaml").read_text()
    assert "nightly-evaluate.sh" in (JOBS / "nightly" / "crontab").read_text()


def _evaluate_commands(path: Path) -> list[str]:
    """The `largeemb evaluate` command lines of a template: shell lines, or a manifest's container commands."""
    lines = path.read_text().replace("\\\n", " ").splitlines()
    if path in YAMLS:
        for doc in yaml.safe_load_all(path.read_text()):
            spec = (doc or {}).get("spec", {})
            job = spec["jobTemplate"]["spec"] if doc and doc["kind"] == "CronJob" else spec
            for container in job.get("template", {}).get("spec", {}).get("containers", []):
                lines.append(" ".join(container["command"] + container.get("args", [])))
    return [line for line in lines if "largeemb evaluate" in line]


def test_templates_use_only_existing_evaluate_options():
    help_text = CliRunner().invoke(app, ["evaluate", "--help"], terminal_width=200).output
    checked = set()
    for path in TEMPLATES:
        for line in _evaluate_commands(path):
            for option in re.findall(r"(--[a-z][a-z-]+)", line):
                assert re.search(rf"{re.escape(option)}(?![a-z-])", help_text), f"{path.name}: {option}"
                checked.add(option)
    assert {"--workers", "--threads-per-worker", "--scheduler", "--resume"} <= checked  # the manifests' commands too


def _containers(doc) -> tuple[dict, list[dict]]:
    job = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
    pod = job["template"]["spec"]
    return pod, pod["containers"]


def test_the_manifests_run_the_image_the_dockerfile_builds_with_the_readmes_install():
    dockerfile = (ROOT / "Dockerfile").read_text()
    readme_block = (ROOT / "README.md").read_text().split("```bash", 1)[1].split("```", 1)[0]
    first_command = next(line for line in readme_block.splitlines() if line.strip() and not line.startswith("#"))
    readme_install = re.search(r"pip install [^&]+", first_command).group(0).strip()
    (run,) = [line for line in dockerfile.splitlines() if line.startswith("RUN") and "pip install" in line]
    # the same install, from the checkout, with the extras the build asks for (s3 by default: the manifests read s3://)
    install = re.search(r"pip install [^&\\]+", run).group(0).strip()
    assert install.replace('".${EXTRAS}"', ".") == readme_install
    assert re.search(r"^ARG EXTRAS=\[s3\]$", dockerfile, re.MULTILINE)
    assert re.search(r"^FROM python:[\d.]+-slim\s*$", dockerfile, re.MULTILINE)
    user = int(re.search(r"^USER (\d+)", dockerfile, re.MULTILINE).group(1))
    assert user != 0
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE).group(1)
    assert f'org.opencontainers.image.version="{version}"' in dockerfile
    for path in YAMLS:
        for doc in filter(None, yaml.safe_load_all(path.read_text())):
            pod, containers = _containers(doc)
            assert pod["securityContext"]["runAsUser"] == user
            for container in containers:
                assert container["image"].rsplit("/", 1)[-1] == f"largeemb:{version}", path.name


def test_the_sbatch_template_resumes_when_resubmitted_and_needs_no_venv():
    script = (JOBS / "slurm" / "evaluate.sbatch").read_text()
    out_default = next(line for line in script.splitlines() if line.startswith("OUT="))
    assert "SLURM_JOB_ID" not in out_default  # a resubmitted job (a new id) finds the same OUT/.work
    assert "--resume" in script and "VENV=${VENV:-}" in script and 'if [ -n "${VENV}" ]' in script


def test_the_kubernetes_job_says_how_it_gets_object_store_credentials():
    text = (JOBS / "kubernetes" / "evaluate-job.yaml").read_text()
    (doc,) = [doc for doc in yaml.safe_load_all(text) if doc]
    _, (container,) = _containers(doc)
    env = {entry["name"]: entry for entry in container["env"]}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # from a Secret, optional: a role may serve instead
        ref = env[key]["valueFrom"]["secretKeyRef"]
        assert ref["key"] == key and ref["optional"] is True
    # an s3:// OUT stages (and keeps .work) on the results volume, so that a retried pod resumes
    staging = env[STAGING_ENV]["value"]
    assert any(staging.startswith(mount["mountPath"] + "/") for mount in container["volumeMounts"]
               if mount["name"] == "results")
    for words in ("eks.amazonaws.com/role-arn", "iam.gke.io/gcp-service-account", "AWS_ENDPOINT_URL"):
        assert words in text
