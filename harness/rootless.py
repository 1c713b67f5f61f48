"""Run a command with the privileges the local mesh needs, without root where the host allows it.

`python -m harness.rootless CMD...` runs CMD as it is when it already runs as root. Otherwise it
starts CMD in a new user, network, mount and PID namespace (util-linux `unshare`), where the caller is
root, uids 1..N map to the caller's subordinate ids (so istio-proxy can run as uid 1337, which
istio-iptables' rules exclude from capture), and /run and /etc are private copies (for
`ip netns` and its /etc/netns files). Everything the mesh creates lives inside those namespaces
and disappears with them: CMD is PID 1 there, so when it dies for any reason (SIGKILL included)
the kernel ends every process of the run, and the private /run with the run's state and keys goes
with the mount namespace. Nothing is left for `make clean-stale` to find. The Makefile runs the
tests through it.
"""

from __future__ import annotations

import getpass
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

from harness.errors import HarnessError

PROXY_UID = 1337
_FIX = (
    "run 'sudo make e2e', or install uidmap and give your user subordinate ids "
    "(sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $USER)"
)


def subordinate_range(path: Path, names: set[str]) -> tuple[int, int] | None:
    """The first range in /etc/subuid or /etc/subgid for any of `names` (user name or number)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in names and parts[1].isdigit() and parts[2].isdigit():
            return int(parts[1]), int(parts[2])
    return None


def rootless_argv(command: list[str]) -> list[str]:
    """The unshare command line that runs `command` (via --inside) in the new namespaces."""
    missing = [c for c in ("unshare", "newuidmap", "newgidmap") if not shutil.which(c)]
    if missing:
        raise HarnessError(
            f"the local mesh needs root or a user namespace, and {', '.join(missing)} is missing: {_FIX}"
        )
    uid, gid = os.getuid(), os.getgid()
    user = {str(uid)}
    try:
        user.add(pwd.getpwuid(uid).pw_name)
    except KeyError:
        user.add(getpass.getuser())
    uids = subordinate_range(Path("/etc/subuid"), user)
    gids = subordinate_range(Path("/etc/subgid"), user | {str(gid)})
    if not uids or not gids or min(uids[1], gids[1]) <= PROXY_UID:
        raise HarnessError(
            f"the local mesh needs root or subordinate ids for your user (more than {PROXY_UID}): {_FIX}"
        )
    count = min(uids[1], gids[1], 65535)
    # --pid: the run is PID 1 of its own PID namespace, so when it dies, even by SIGKILL, the kernel
    # ends every process it started, and with them the mount namespace that holds /run (state,
    # keys) and the network namespaces. --kill-child=SIGTERM: if unshare itself is killed, the run
    # still tears down cleanly.
    return [
        "unshare",
        "--map-root-user",
        f"--map-users={uids[0]},1,{count}",
        f"--map-groups={gids[0]},1,{count}",
        "--net",
        "--mount",
        "--pid",
        "--mount-proc",
        "--fork",
        "--kill-child=SIGTERM",
        "--",
        sys.executable,
        "-m",
        "harness.rootless",
        "--inside",
        *command,
    ]


def _mount(*args: str) -> None:
    proc = subprocess.run(["mount", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise HarnessError(f"cannot set up the user namespace (mount {' '.join(args)}: {proc.stderr.strip()}): {_FIX}")


def prepare_inside() -> None:
    """In the new mount namespace: private /run (for /run/netns) and a writable copy of /etc
    (for /etc/netns), invisible outside."""
    _mount("--make-rprivate", "/")
    _mount("-t", "tmpfs", "tmpfs", "/run")
    Path("/run/netns").mkdir()
    # The copy of /etc lives on the private /run: nothing of it shows outside, even its mountpoint.
    etc = Path("/run/egress-harness-etc")
    etc.mkdir()
    subprocess.run(["cp", "-a", "/etc/.", str(etc)], capture_output=True)  # unreadable files (shadow) stay out
    _mount("--bind", str(etc), "/etc")
    Path("/etc/netns").mkdir(exist_ok=True)
    # The run's own network namespace starts with loopback down; the harness reaches the local
    # mesh's API server through a forwarder on 127.0.0.1 (harness/local/apiserver.py).
    proc = subprocess.run(["ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise HarnessError(
            f"cannot bring up loopback in the user namespace (ip link set lo up: {proc.stderr.strip()}): {_FIX}"
        )


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--inside"]:
        command = args[1:]
        try:
            prepare_inside()
        except HarnessError as exc:
            print(f"egress-harness: {exc}", file=sys.stderr)
            return 2
        os.execvp(command[0], command)
    if not args:
        print("usage: python -m harness.rootless COMMAND...", file=sys.stderr)
        return 2
    if os.geteuid() == 0:
        os.execvp(args[0], args)
    try:
        full = rootless_argv(args)
    except HarnessError as exc:
        print(f"egress-harness: {exc}", file=sys.stderr)
        return 2
    os.execvp(full[0], full)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
