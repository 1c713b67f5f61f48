"""The artifacts folder: claimed by one run at a time, checked before anything starts, and cleaned
of what the harness wrote there and nothing else.

- `claim(path)`: a regular file, an unwritable folder or one with less than MIN_FREE_BYTES free is
  one line naming the fix (a full disk mid-run would otherwise read as a mesh failure: the
  gateway's access-log line that a check looks for could not be written); the folder's `.lock`
  is held for the run, so a second run (pytest, `make mesh`, the upgrade) refuses it; the marker
  file says the harness made the folder, which `clean` requires; a reserve file keeps room for
  junit.xml and summary.md at the end (`release_reserve`) even when the run filled the disk.
- `python3 -m harness.artifacts clean DIR` (`make clean`): removes the harness's own names in DIR
  (and DIR if that leaves it empty), only when DIR carries the marker: `make clean ARTIFACTS=/tmp`
  removes nothing of /tmp. Standard library only: `make clean` needs no virtualenv.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import sys
from pathlib import Path

from harness.errors import HarnessError  # standard library only, as this module

MARKER = ".egress-harness"
LOCK = ".lock"
RESERVE = ".reserve"
# The mesh's logs, the evidence of a few failed tests and the reports fit in far less; below this
# a run would fill the disk part-way and read the missing lines as mesh failures.
MIN_FREE_BYTES = 64 * 1024 * 1024
RESERVE_BYTES = 1024 * 1024
# Everything the harness writes at the top of an artifacts folder (other runs' folders below it,
# such as test/ or kind/, carry their own marker and are cleaned the same way).
KNOWN_NAMES = (
    "junit.xml",
    "summary.md",
    "summary.json",
    "fidelity.md",
    "evidence",
    "mesh-logs",
    "upgrade",
    "bench",
    "kind",
    "cluster",
    "traffic",
    "plan-kind.txt",
    "plan-cluster.txt",
    MARKER,
    LOCK,
    RESERVE,
)


class ArtifactsProblem(HarnessError):
    """One line: what is wrong with the artifacts folder and what to do."""


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def is_full(path: Path) -> bool:
    """The folder's file system has less room than a run needs (checked when a test fails)."""
    try:
        return free_bytes(path) < MIN_FREE_BYTES
    except OSError:
        return False


# Said to pytest users and make users alike: the option, and the make variable that sets it.
OTHER_FOLDER = "--egress-artifacts DIR (make: ARTIFACTS=DIR), another folder"


def full_line(path: Path) -> str:
    return (
        f"the artifacts folder {path} is full ({free_bytes(path) // 1024} KiB free, a run needs "
        f"{MIN_FREE_BYTES // 2**20} MiB): free space there, or pass {OTHER_FOLDER} on another disk"
    )


def claim(path: Path) -> tuple[Path, int]:
    """(the resolved folder, the lock's descriptor, kept open for the run); ArtifactsProblem otherwise."""
    path = path.resolve()
    if path.exists() and not path.is_dir():
        raise ArtifactsProblem(f"the artifacts folder {path} is a file: pass {OTHER_FOLDER} (it is created)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ArtifactsProblem(
            f"cannot write the artifacts folder {path}: {exc.strerror} (pass {OTHER_FOLDER} you can write)"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ArtifactsProblem(
            f"the artifacts folder {path} is in use by another run: wait for it, or pass {OTHER_FOLDER}"
        ) from None
    os.set_inheritable(fd, False)
    try:
        if free_bytes(path) < MIN_FREE_BYTES + RESERVE_BYTES:
            raise ArtifactsProblem(full_line(path))
        (path / MARKER).write_text("made by egress-harness; `make clean` removes only what the harness wrote\n")
        with open(path / RESERVE, "wb") as reserve:
            reserve.write(b"\0" * RESERVE_BYTES)
    except BaseException:
        os.close(fd)
        raise
    return path, fd


def release_reserve(path: Path) -> None:
    """Give the reserve back, so that the reports written last find room."""
    try:
        (path / RESERVE).unlink()
    except OSError:
        pass


def clean(path: Path) -> str:
    """Remove what the harness wrote in `path`; the line to print."""
    path = path.resolve()
    if not path.exists():
        return f"nothing to clean: {path} does not exist"
    if not path.is_dir():
        raise ArtifactsProblem(f"{path} is a file, not an artifacts folder: nothing removed")
    if not (path / MARKER).exists():
        raise ArtifactsProblem(
            f"{path} was not made by egress-harness (no {MARKER} in it): nothing removed; remove it yourself if you mean to"
        )
    try:
        fd = os.open(path / LOCK, os.O_RDWR)
    except OSError:
        fd = None
    if fd is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ArtifactsProblem(f"{path} is in use by a run: nothing removed; clean it after the run") from None
        finally:
            os.close(fd)
    removed = 0
    for child in sorted(path.iterdir()):
        if child.is_dir() and not child.is_symlink() and (child / MARKER).exists():
            clean(child)  # a run's folder below this one (ARTIFACTS=artifacts/test)
            removed += 1
        elif child.name in KNOWN_NAMES:
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
            removed += 1
    try:
        path.rmdir()
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        left = sorted(c.name for c in path.iterdir())
        return f"cleaned {path} ({removed} of the harness's entries); kept what it did not write: {', '.join(left)}"
    return f"removed {path}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "clean":
        print("usage: python3 -m harness.artifacts clean DIR", file=sys.stderr)
        return 2
    try:
        print(clean(Path(args[1])))
    except ArtifactsProblem as exc:
        print(f"egress-harness: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
