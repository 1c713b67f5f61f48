"""`docker build` of a generated context, cached by tag, with a log file per image.

Every image of the kind backend is built here: nothing is pulled (`pull=False`, bases are local
images) and the build's RUN steps have no network (`network_mode="none"`). A tag carries the hash of
everything that goes into the image, so an existing tag is a finished build. A failed build raises
one HarnessError line naming the image and its log (`<cache_root()>/images/logs/<name>.log`).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from harness.cache import cache_root
from harness.console import say
from harness.errors import HarnessError

if TYPE_CHECKING:
    import docker


def log_dir() -> Path:
    return cache_root() / "images" / "logs"


def content_key(*parts: object) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            if part.is_dir():
                for f in sorted(p for p in part.rglob("*") if p.is_file()):
                    h.update(str(f.relative_to(part)).encode() + b"\0" + f.read_bytes() + b"\0")
            else:
                h.update(part.read_bytes())
        else:
            h.update(str(part).encode())
        h.update(b"\x1f")
    return h.hexdigest()[:12]


def has_image(client: docker.DockerClient, tag: str) -> bool:
    import docker.errors

    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def build(
    client: docker.DockerClient, tag: str, dockerfile: str, files: Mapping[str, Path | bytes | str], *, what: str
) -> str:
    """Build `tag` from `dockerfile` and a context made of `files` (context path -> source file, directory
    or content). Returns the tag; does nothing when the tag exists."""
    if has_image(client, tag):
        return tag
    log_path = log_dir() / f"{tag.replace('/', '_').replace(':', '_')}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    ctx = Path(tempfile.mkdtemp(prefix="eh-build-", dir=str(cache_root())))
    started = time.monotonic()
    try:
        (ctx / "Dockerfile").write_text(dockerfile)
        for rel, src in files.items():
            dest = ctx / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(src, Path):
                if src.is_dir():
                    shutil.copytree(src, dest, symlinks=True)
                else:
                    shutil.copy2(src, dest)
            else:
                dest.write_bytes(src.encode() if isinstance(src, str) else src)
        say(f"building image {tag} ({what}; log: {log_path})")
        error = ""
        with log_path.open("w") as log:
            log.write(dockerfile + "\n----\n")
            for chunk in client.api.build(
                path=str(ctx),
                tag=tag,
                pull=False,
                rm=True,
                forcerm=True,
                network_mode="none",
                decode=True,
                labels={"egress-harness": what},
            ):
                text = chunk.get("stream") or chunk.get("status") or ""
                if chunk.get("error"):
                    error = chunk["error"].strip()
                    text = f"ERROR: {error}\n"
                log.write(text)
        if error or not has_image(client, tag):
            raise HarnessError(f"building image {tag} failed: {(error or 'no image produced')[:200]} (log: {log_path})")
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    say(f"built image {tag} in {time.monotonic() - started:.0f}s")
    return tag
