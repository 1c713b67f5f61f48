"""The built wheel: what pyproject ships is the whole tool.

A wheel is built from the checkout's files, installed into a fresh virtualenv, and used from a
folder that is not the repository: `egress-harness diff-config` with nothing else installed, and
`egress-harness e2e` running one of the packaged suites on a real local mesh (fixtures and suites
found as package data, harness/project_files.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from setuptools import find_namespace_packages
from test_config_diff import gateway_dump

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_pyproject_lists_every_package_of_the_checkout():
    """The packages are listed (the data folders' mapping rules out setuptools' find): a new
    subpackage missing from the list would be missing from the wheel."""
    found = {p for p in find_namespace_packages(str(REPO), include=["harness*", "mock_upstream*"]) if "__" not in p}
    listed = set(PYPROJECT["packages"])
    data = {name for name in listed if name.startswith("harness._data.")}
    assert listed - data == found
    assert {PYPROJECT["package-dir"][name] for name in data} == {"fixtures", "suites"}


def _checkout_files() -> list[str]:
    """What a clone has (tracked files and new ones not ignored), not the venv or artifacts."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    return [name for name in out.decode().split("\0") if name and (REPO / name).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the checkout (setuptools writes build/ into its source)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    for name in _checkout_files():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes((REPO / name).read_bytes())
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(root), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [built] = root.glob("egress_harness-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel and nothing else (no dependency installed)."""
    env = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=120)
    subprocess.run(
        [env / "bin" / "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, timeout=120
    )
    return env


def _run(cmd: list, cwd: Path, **kw) -> subprocess.CompletedProcess:
    # The user's shell, not this session's: no PYTHONPATH pointing back at the checkout.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("EGRESS_HARNESS_")}
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, **kw)


def test_the_wheel_carries_fixtures_suites_and_go_sources(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("fixtures", "suites"):
        want = {
            f"harness/_data/{folder}/{p.relative_to(REPO / folder)}"
            for p in (REPO / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }
        assert want and want <= names, sorted(want - names)
    go = {f"harness/local/pod_streams/{n}" for n in ("go.mod", "go.sum", "main.go")}
    assert go <= names, sorted(go - names)
    assert "mock_upstream/Dockerfile" in names
    assert not any(n.startswith(("tests/", "docs/", "examples/")) for n in names)


def test_diff_config_from_the_wheel_with_nothing_else_installed(venv: Path, tmp_path: Path):
    py = venv / "bin" / "python"
    assert _run([py, "-c", "import pytest"], tmp_path).returncode != 0, "the venv should have no dependency"
    before, after = gateway_dump(), gateway_dump()
    cluster = after["configs"][1]["dynamic_active_clusters"][0]["cluster"]
    cluster["transport_socket"]["typed_config"]["sni"] = "wrong.example.com"
    (tmp_path / "a.json").write_text(json.dumps(before))
    (tmp_path / "b.json").write_text(json.dumps(after))
    tool = venv / "bin" / "egress-harness"
    same = _run([tool, "diff-config", "a.json", "a.json"], tmp_path, timeout=60)
    assert same.returncode == 0, same.stdout + same.stderr
    differ = _run([tool, "diff-config", "a.json", "b.json"], tmp_path, timeout=60)
    assert differ.returncode == 1, differ.stdout + differ.stderr
    assert "wrong.example.com" in differ.stdout, differ.stdout
    assert str(venv) in _run([py, "-c", "import harness; print(harness.__file__)"], tmp_path).stdout


@pytest.mark.mesh
@pytest.mark.istio
@pytest.mark.slow
def test_e2e_from_the_wheel_runs_a_packaged_suite_on_the_local_mesh(venv: Path, tmp_path: Path):
    """The wheel's own suites and fixtures on a real mesh. The dependencies come from this
    session's virtualenv as a plain path (no .pth of it runs, so its editable harness is not seen):
    the wheel's harness is the one imported."""
    site = next((venv / "lib").glob("python3*/site-packages"))
    deps = next(p for p in map(Path, sys.path) if p.name == "site-packages" and (p / "pytest").is_dir())
    (site / "deps-of-this-session.pth").write_text(f"{deps}\n")
    try:
        py = venv / "bin" / "python"
        where = _run([py, "-c", "import harness, pytest; print(harness.__file__)"], tmp_path).stdout
        assert where.startswith(str(site)), where
        run = _run(
            [venv / "bin" / "egress-harness", "e2e", "-p", "no:cacheprovider", "-q"]
            + ["-k", "test_http_through_gateway and istio-mutual and not gateway-api"]
            + [f"--egress-artifacts={tmp_path / 'artifacts'}"],
            tmp_path,
            timeout=600,
        )
        out = run.stdout + run.stderr
        assert run.returncode == 0, out[-4000:]
        assert "1 passed" in out, out[-4000:]
        summary = json.loads((tmp_path / "artifacts" / "summary.json").read_text())
        assert [row["outcome"] for row in summary["tests"]] == ["passed"], summary
        assert not (tmp_path / "fixtures").exists() and not (tmp_path / "suites").exists()
    finally:
        (site / "deps-of-this-session.pth").unlink()
