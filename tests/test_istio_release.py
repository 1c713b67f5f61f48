"""Released Istio (harness/istio_release.py): istioctl fetched from a release tree and verified
against the checksum published beside it. Here the tree is served by a local HTTP server laid out
as GitHub's releases/download/<version>/ (no GitHub is reachable from our machines): a good release
installs, a wrong checksum and a missing file are one line each and install nothing."""

from __future__ import annotations

import functools
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness import istio_release
from harness.errors import HarnessError
from harness.istio_binaries import ensure_istio

REPO = Path(__file__).resolve().parents[1]
ISTIOCTL = "#!/bin/sh\necho 'client version: {version}'\n"


def _archive(version: str) -> bytes:
    """An istioctl release archive: istioctl at its root, as Istio publishes it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        body = ISTIOCTL.format(version=version).encode()
        info = tarfile.TarInfo("istioctl")
        info.size, info.mode = len(body), 0o755
        tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def _publish(root: Path, version: str, *, sha256: str | None = None) -> None:
    folder = root / version
    folder.mkdir(parents=True)
    name = istio_release.archive_name(version)
    data = _archive(version)
    (folder / name).write_bytes(data)
    (folder / f"{name}.sha256").write_text(f"{sha256 or hashlib.sha256(data).hexdigest()}  {name}\n")


class _Handler(SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        self.requests.append(self.path)


@pytest.fixture
def releases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, list[str]]]:
    root = tmp_path / "releases"
    root.mkdir()
    seen: list[str] = []
    handler = type("Handler", (_Handler,), {"requests": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(istio_release.BASE_ENV, f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("EGRESS_HARNESS_CACHE", str(tmp_path / "cache"))
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    try:
        yield root, seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_release_is_fetched_verified_and_cached(releases):
    root, seen = releases
    _publish(root, "1.30.2")
    path = istio_release.fetch_istioctl("1.30.2")
    assert path == istio_release.istioctl_path("1.30.2") and os.access(path, os.X_OK)
    assert subprocess.run([path], capture_output=True, text=True, check=True).stdout == "client version: 1.30.2\n"
    name = istio_release.archive_name("1.30.2")
    assert seen == [f"/1.30.2/{name}.sha256", f"/1.30.2/{name}"]
    assert istio_release.fetch_istioctl("1.30.2") == path and len(seen) == 2, "fetched again although cached"


def test_a_wrong_checksum_is_one_line_and_installs_nothing(releases):
    root, _ = releases
    _publish(root, "1.30.3", sha256="0" * 64)
    with pytest.raises(HarnessError) as caught:
        istio_release.fetch_istioctl("1.30.3")
    message = str(caught.value)
    assert "checksum mismatch" in message and "0" * 64 in message and "\n" not in message, message
    assert not istio_release.istioctl_path("1.30.3").parent.exists() or not any(
        istio_release.istioctl_path("1.30.3").parent.iterdir()
    )


def test_a_missing_release_is_one_line_naming_the_url(releases):
    with pytest.raises(HarnessError) as caught:
        istio_release.fetch_istioctl("1.30.99")
    message = str(caught.value)
    assert "answered HTTP 404" in message and "1.30.99" in message and "\n" not in message, message
    assert not istio_release.istioctl_path("1.30.99").exists()


def test_a_checksum_file_for_another_archive_is_refused(releases):
    root, _ = releases
    _publish(root, "1.30.4")
    name = istio_release.archive_name("1.30.4")
    (root / "1.30.4" / f"{name}.sha256").write_text(f"{'a' * 64}  istio-1.30.4-linux-amd64.tar.gz\n")
    with pytest.raises(HarnessError, match="is not '<sha256>  istioctl-1.30.4"):
        istio_release.fetch_istioctl("1.30.4")


def test_the_local_mesh_refuses_a_release_naming_its_branch_build():
    with pytest.raises(HarnessError) as caught:
        ensure_istio("1.30.2")
    assert "use --istio-version 1.30 for those" in str(caught.value), caught.value


def test_a_dry_run_with_a_released_version_prints_its_plan(tmp_path: Path):
    """`make e2e BACKEND=kind DRY_RUN=1 ISTIO_VERSION=1.30.2`: the release's istioctl and images, nothing fetched."""
    cache = tmp_path / "cache"
    env = dict(os.environ, EGRESS_HARNESS_CACHE=str(cache), EGRESS_HARNESS_IMAGES="registry")
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "suites/test_troubleshooting.py",
            "-q",
            "-p",
            "no:cacheprovider",
            "--egress-backend=kind",
            "--egress-dry-run",
            "--egress-istio-version=1.30.2",
            f"--egress-artifacts={tmp_path / 'artifacts'}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "$ python -m harness.istio_release 1.30.2" in proc.stdout
    assert f"{istio_release.DEFAULT_BASE}/1.30.2/{istio_release.archive_name('1.30.2')}" in proc.stdout
    assert "--set=hub=docker.io/istio --set=tag=1.30.2" in proc.stdout
    assert not cache.exists() or not any(cache.rglob("istioctl")), "the dry run fetched istioctl"


def test_make_istio_with_a_release_fetches_its_istioctl(releases, capsys):
    """`make istio ISTIO_VERSION=1.30.5` (what make e2e runs first): the release's istioctl, no build."""
    from harness.istio_binaries import main

    root, _ = releases
    _publish(root, "1.30.5")
    assert main(["--istio-version", "1.30.5"]) == 0
    assert capsys.readouterr().out == f"Istio 1.30.5 as released: istioctl {istio_release.istioctl_path('1.30.5')}\n"
