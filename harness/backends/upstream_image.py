"""The stand-in for edition.cnn.com as a container, and the sleep pods' image, with no registry.

Images (all built locally with the `docker` SDK, never pulled):
  egress-harness/debian-base:<key>     a Debian rootfs made by debootstrap (minbase + BASE_PACKAGES),
                                       imported as an image (`docker import`); the tarball is cached
                                       under <cache_root()>/rootfs/<key>.tar.gz, keyed by suite,
                                       variant and packages, so only the first build runs debootstrap
  egress-harness/mock-upstream:<hash>  mock_upstream/Dockerfile on that base (BASE_IMAGE build arg);
                                       the tag is a hash of the base and of the build context
  egress-harness/sleep:<key>           the base itself (curl, openssl, getent): the sleep pods' image,
                                       loaded into kind with `kind load docker-image`

The stand-in container gets its certificate, key and client CA copied in before it starts
(put_archive: works with any engine, no bind mount), and publishes its control port on 127.0.0.1
only. Debian's mirror is the one apt already uses (see debian_mirror()).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.cache import cache_root
from harness.console import say as _say
from harness.errors import HarnessError
from harness.project_files import MOCK_UPSTREAM
from harness.stand_in import CERT_DIR, CONTROL_TOKEN_ENV, UPSTREAM_PORTS, upstream_command
from harness.upstream_client import UpstreamPorts, parse_ready_line
from harness.wait import poll

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container


SUITE = "bookworm"
VARIANT = "minbase"
# python3-minimal runs mock_upstream; curl, openssl (and minbase's getent) are what the sleep pods run.
BASE_PACKAGES = ("python3-minimal", "curl", "openssl")
BASE_REPO = "egress-harness/debian-base"
UPSTREAM_REPO = "egress-harness/mock-upstream"
SLEEP_REPO = "egress-harness/sleep"
# Removed from the rootfs before it is packed: docs and apt's package lists and downloaded .debs.
_TRIM = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "var/cache/apt/pkgcache.bin",
    "var/cache/apt/srcpkgcache.bin",
    "var/log",
)


# ------------------------------------------------------------------------------ Debian mirror
@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


def parse_apt_sources(text: str, *, deb822: bool) -> list[AptSource]:
    """The `deb` entries of a sources.list (one-line format) or a .sources file (deb822)."""
    out: list[AptSource] = []
    if not deb822:
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if not line.startswith("deb "):
                continue
            parts = line.split()[1:]
            if parts and parts[0].startswith("["):  # options: [arch=amd64 signed-by=...]
                while parts and not parts[0].endswith("]"):
                    parts.pop(0)
                parts = parts[1:]
            if len(parts) >= 2:
                out.append(AptSource(parts[0], (parts[1],), tuple(parts[2:])))
        return out
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.lstrip().startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            out.append(
                AptSource(uri, tuple(fields.get("suites", "").split()), tuple(fields.get("components", "").split()))
            )
    return out


_DEBIAN_SUITES = {"buster", "bullseye", "bookworm", "trixie", "forky", "sid", "stable", "testing", "unstable"}


def debian_mirror(apt_dir: Path = Path("/etc/apt"), suite: str = SUITE) -> str:
    """The Debian archive apt uses here (EGRESS_HARNESS_DEBIAN_MIRROR wins): an entry whose suites
    include `suite`, else one with any plain Debian suite (its archive serves the others too)."""
    if os.environ.get("EGRESS_HARNESS_DEBIAN_MIRROR"):
        return os.environ["EGRESS_HARNESS_DEBIAN_MIRROR"]
    sources: list[AptSource] = []
    files = [apt_dir / "sources.list"] + sorted((apt_dir / "sources.list.d").glob("*"))
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        if f.suffix == ".sources":
            sources += parse_apt_sources(text, deb822=True)
        elif f.name == "sources.list" or f.suffix == ".list":
            sources += parse_apt_sources(text, deb822=False)
    usable = [s for s in sources if "main" in s.components and "security" not in s.uri]
    for s in usable:
        if suite in s.suites:
            return s.uri
    for s in usable:
        if any(x in _DEBIAN_SUITES for x in s.suites):
            return s.uri
    raise HarnessError(
        f"no Debian mirror with suite {suite} main in {apt_dir}/sources.list*: "
        f"set EGRESS_HARNESS_DEBIAN_MIRROR (e.g. http://deb.debian.org/debian)"
    )


# ------------------------------------------------------------------------------ rootfs
def rootfs_key(suite: str = SUITE, packages: tuple[str, ...] = BASE_PACKAGES, variant: str = VARIANT) -> str:
    pkgs = "+".join(sorted(packages))
    return re.sub(r"[^A-Za-z0-9.+_-]", "_", f"debian-{suite}-{variant}-{pkgs}")


def rootfs_tarball_path(suite: str = SUITE, packages: tuple[str, ...] = BASE_PACKAGES) -> Path:
    return cache_root() / "rootfs" / f"{rootfs_key(suite, packages)}.tar.gz"


def debootstrap_command(
    target: Path, mirror: str, suite: str = SUITE, packages: tuple[str, ...] = BASE_PACKAGES
) -> list[str]:
    return ["debootstrap", f"--variant={VARIANT}", f"--include={','.join(packages)}", suite, str(target), mirror]


def ensure_rootfs_tarball(
    suite: str = SUITE, packages: tuple[str, ...] = BASE_PACKAGES, mirror: str | None = None
) -> tuple[Path, bool]:
    """The cached rootfs tarball, made with debootstrap if missing. Returns (path, built_now)."""
    tarball = rootfs_tarball_path(suite, packages)
    if tarball.exists():
        return tarball, False
    if not shutil.which("debootstrap"):
        raise HarnessError(
            "debootstrap is needed to make the images' base (no registry here): apt-get install debootstrap"
        )
    if os.geteuid() != 0:
        raise HarnessError(
            f"debootstrap needs root to make the images' base: run as root, or put a rootfs tarball at {tarball}"
        )
    mirror = mirror or debian_mirror(suite=suite)
    tarball.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=tarball.parent))
    try:
        target = work / "root"
        cmd = debootstrap_command(target, mirror, suite, packages)
        _say(f"making the image base with {' '.join(cmd)} (about a minute, once)")
        started = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
            log = target / "debootstrap" / "debootstrap.log"
            detail = log.read_text().strip().splitlines()[-1] if log.exists() and log.read_text().strip() else tail[0]
            raise HarnessError(
                f"debootstrap {suite} from {mirror} failed: {detail[:300]} "
                f"(check the mirror, or set EGRESS_HARNESS_DEBIAN_MIRROR)"
            )
        for rel in _TRIM:
            path = target / rel
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
                path.mkdir()
            elif path.exists():
                path.unlink()
        tmp_tar = work / "rootfs.tar.gz"
        with tarfile.open(tmp_tar, "w:gz", compresslevel=6) as tar:
            for entry in sorted(os.listdir(target)):
                tar.add(target / entry, arcname=entry)
        os.replace(tmp_tar, tarball)
        tarball.with_suffix(".json").write_text(
            json.dumps(
                {
                    "suite": suite,
                    "variant": VARIANT,
                    "packages": list(packages),
                    "mirror": mirror,
                    "seconds": round(time.monotonic() - started, 1),
                    "bytes": tarball.stat().st_size,
                    "made_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                },
                indent=2,
            )
        )
        _say(f"image base ready in {time.monotonic() - started:.0f}s: {tarball}")
        return tarball, True
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------------ images
def _context_digest() -> str:
    h = hashlib.sha256()
    for path in sorted([MOCK_UPSTREAM / "Dockerfile", *MOCK_UPSTREAM.glob("*.py")]):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def base_tag(suite: str = SUITE, packages: tuple[str, ...] = BASE_PACKAGES) -> str:
    return f"{BASE_REPO}:{hashlib.sha256(rootfs_key(suite, packages).encode()).hexdigest()[:12]}"


def sleep_tag(suite: str = SUITE, packages: tuple[str, ...] = BASE_PACKAGES) -> str:
    return f"{SLEEP_REPO}:{base_tag(suite, packages).split(':')[1]}"


def upstream_tag(suite: str = SUITE, packages: tuple[str, ...] = BASE_PACKAGES) -> str:
    digest = hashlib.sha256((base_tag(suite, packages) + _context_digest()).encode()).hexdigest()[:12]
    return f"{UPSTREAM_REPO}:{digest}"


def _has_image(client: docker.DockerClient, tag: str) -> bool:
    import docker.errors

    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def ensure_base_image(client: docker.DockerClient, tarball: Path | None = None) -> str:
    """Import the rootfs tarball as the base image (and tag it as the sleep image too)."""
    tag = base_tag()
    if not _has_image(client, tag):
        tarball = tarball or ensure_rootfs_tarball()[0]
        repo, version = tag.split(":")
        _say(f"importing {tarball.name} as {tag}")
        client.api.import_image_from_file(str(tarball), repository=repo, tag=version)
        if not _has_image(client, tag):
            raise HarnessError(f"docker import of {tarball} did not produce {tag}: remove the tarball and retry")
    client.images.get(tag).tag(*sleep_tag().split(":"))
    return tag


def build_upstream_image(client: docker.DockerClient, base: str | None = None) -> str:
    """docker build of mock_upstream/Dockerfile on the local base; nothing is pulled, and the build's
    RUN steps have no network."""
    import docker.errors

    base = base or ensure_base_image(client)
    tag = upstream_tag()
    if _has_image(client, tag):
        return tag
    _say(f"building {tag} from {MOCK_UPSTREAM}/Dockerfile on {base}")
    try:
        client.images.build(
            path=str(MOCK_UPSTREAM),
            tag=tag,
            buildargs={"BASE_IMAGE": base},
            pull=False,
            rm=True,
            forcerm=True,
            network_mode="none",
            use_config_proxy=False,
            labels={"egress-harness": "mock-upstream"},
        )
    except docker.errors.BuildError as exc:
        lines = [str(x.get("stream") or x.get("error") or "").strip() for x in exc.build_log]
        detail = next((line for line in reversed(lines) if "error" in line.lower()), lines[-1] if lines else str(exc))
        raise HarnessError(f"building the stand-in image failed: {detail[:300]}") from None
    return tag


# ------------------------------------------------------------------------------ running it
def cert_archive(files: dict[str, bytes], directory: str, mode: int = 0o444) -> bytes:
    """A tar of `directory`/files for put_archive into its parent (readable by the container's user;
    the keys are the run's test keys)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(directory)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        info.mtime = int(time.time())
        tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(f"{directory}/{name}")
            info.size = len(data)
            info.mode = mode
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class UpstreamContainer:
    container: Container
    network: str
    address: str  # on `network`
    control_url: str  # http://127.0.0.1:<published port> when published, else via `address`
    ports: UpstreamPorts
    control_token: str  # the run's token its control API requires (CONTROL_TOKEN_ENV)

    def remove(self) -> None:
        import docker.errors

        try:
            self.container.remove(force=True)
        except docker.errors.NotFound:
            pass

    def logs(self) -> str:
        return self.container.logs().decode("utf-8", "replace")


def run_upstream(
    client: docker.DockerClient,
    image: str,
    network: str,
    *,
    name: str,
    cert_chain_pem: bytes,
    key_pem: bytes,
    client_ca_pem: bytes,
    publish_control: bool = True,
    labels: dict[str, str] | None = None,
    timeout: float = 30.0,
    control_token: str | None = None,
    site_files: dict[str, bytes] | None = None,
    site_certs: list[tuple[str, str, str]] | None = None,
) -> UpstreamContainer:
    """Create the stand-in on `network`, copy its certificates in, start it, wait for its ready line.
    Its control API requires `control_token` (a new random one by default): whatever else reaches
    the container's port (a pod on the network) cannot reset or read its records. site_files and
    site_certs: the other sites' certificates (stand_in.container_site_files), chosen by SNI."""
    ports = {f"{UPSTREAM_PORTS['control']}/tcp": ("127.0.0.1", None)} if publish_control else None
    token = control_token or secrets.token_urlsafe(24)
    container = client.containers.create(
        image,
        command=upstream_command(site_certs=site_certs or []),
        name=name,
        network=network,
        ports=ports,
        environment={CONTROL_TOKEN_ENV: token},
        labels={"egress-harness": "mock-upstream", **(labels or {})},
        detach=True,
    )
    try:
        parent, leaf = CERT_DIR.rsplit("/", 1)
        container.put_archive(
            parent or "/",
            cert_archive(
                {"cert.pem": cert_chain_pem, "key.pem": key_pem, "client-ca.pem": client_ca_pem, **(site_files or {})},
                leaf,
            ),
        )
        container.start()

        def ready() -> UpstreamPorts | None:
            container.reload()
            if container.status in ("exited", "dead"):
                raise HarnessError(f"the stand-in exited: {container.logs().decode('utf-8', 'replace').strip()[-400:]}")
            out = container.logs(stdout=True, stderr=False).decode("utf-8", "replace")
            line = next((ln for ln in out.splitlines() if ln.startswith("{")), None)
            return parse_ready_line(line) if line else None

        try:
            ports_seen = poll(
                f"the stand-in container {name} to print its ready line", ready, timeout=timeout, interval=0.2
            )
        except HarnessError:
            raise
        container.reload()
        address = container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
        # Docker publishes no ports from an internal network: then the control port is reached
        # at the container's address on it (the host is on every bridge network).
        bindings = (container.attrs["NetworkSettings"].get("Ports") or {}).get(f"{UPSTREAM_PORTS['control']}/tcp")
        if publish_control and bindings:
            control_url = f"http://127.0.0.1:{bindings[0]['HostPort']}"
        else:
            control_url = f"http://{address}:{UPSTREAM_PORTS['control']}"
        return UpstreamContainer(container, network, address, control_url, ports_seen, token)
    except BaseException:
        container.remove(force=True)
        raise
