"""`egress-harness`: one command for what the Makefile's targets run.

    egress-harness e2e [pytest options and ids]   the suites on a mesh (--egress-backend, -k, ...)
    egress-harness mesh [--istio-version V]       the local mesh, held up until Ctrl-C
    egress-harness upgrade --from A --to B        an Istio upgrade on one mesh, with its report
    egress-harness bench [options]                what each egress path costs
    egress-harness diff-config A B                the semantic Envoy config diff (exit 1: they differ)
    egress-harness fidelity A.json B.json         two backends' summaries side by side

Each command takes --help. The commands that start a local mesh (e2e on the local backend, mesh,
upgrade, bench) run as root or, without it, in a user namespace of their own (harness/rootless.py),
as the Makefile runs them. diff-config and fidelity read files only.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.project_files import SUITES

PROG = "egress-harness"


@dataclass(frozen=True)
class Command:
    summary: str
    module: str  # its main(argv) -> int
    needs_mesh_privileges: bool = False


COMMANDS = {
    "e2e": Command("the suites on a mesh: pytest with the harness plugin (pytest --help lists its options)", __name__),
    "mesh": Command("the local mesh, held up until Ctrl-C, with its KUBECONFIG line", "harness.local.up", True),
    "upgrade": Command(
        "an Istio upgrade on one mesh, traffic and config diff reported", "harness.upgrade.__main__", True
    ),
    "bench": Command("what each egress path costs (latency, CPU per Envoy)", "harness.bench_egress.__main__", True),
    "diff-config": Command("the semantic diff of two Envoy config dumps or evidence folders", "harness.config_diff"),
    "fidelity": Command("two backends' summary.json side by side", "harness.fidelity"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: {PROG} COMMAND [options]   ({PROG} COMMAND --help for each)", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {c.summary}" for name, c in COMMANDS.items()]
    return "\n".join(lines)


def _privileged(argv: list[str]) -> None:
    """Without root, run this command again in the mesh's user namespace (harness/rootless.py);
    inside it (or as root) carry on here."""
    if os.geteuid() == 0:
        return
    os.execv(sys.executable, [sys.executable, "-m", "harness.rootless", sys.executable, "-m", __name__, *argv])


def _backend(args: list[str]) -> str:
    """The backend the pytest arguments (else the environment) name: the local one needs the
    mesh's privileges."""
    from harness.pytest_options import OPTIONS

    option = OPTIONS["backend"]
    for i, a in enumerate(args):
        if a == option.flag_name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(option.flag_name + "="):
            return a.split("=", 1)[1]
    return os.environ.get(option.env) or str(option.default)


def e2e(args: list[str]) -> int:
    """pytest on the suites (unless a path or test id is given, as `make e2e PYTEST_ARGS=...`)."""
    import pytest

    given_path = any(not a.startswith("-") and Path(a.split("::", 1)[0]).exists() for a in args)
    if not given_path and not any(a in ("-h", "--help") for a in args):
        if not SUITES.is_dir():
            print(f"{PROG}: no suites next to the package ({SUITES}): pass the folder of your tests", file=sys.stderr)
            return 4
        args = [str(SUITES), *args]
    if _backend(args) == "local" and not any(a in ("-h", "--help", "--collect-only") for a in args):
        _privileged(["e2e", *args])
    return int(pytest.main(args))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    command = COMMANDS.get(name)
    if command is None:
        print(f"{PROG}: no command {name!r}: one of {', '.join(COMMANDS)} ({PROG} --help)", file=sys.stderr)
        return 2
    if name == "e2e":
        return e2e(rest)
    if command.needs_mesh_privileges and not any(a in ("-h", "--help") for a in rest):
        _privileged(argv)
    run: Callable[[list[str]], int] = importlib.import_module(command.module).main
    return int(run(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
