"""The plugin's options: one table, each option on the command line, in the environment and in
pytest's ini file (pytest.ini, pyproject's [tool.pytest.ini_options], tox.ini, setup.cfg).

Every name carries the `egress` prefix: the plugin is installed for a whole venv, where `--backend`
or `--kubeconfig` are other plugins' options (pytest-kind-ng's --kubeconfig stopped every session
of a venv that loaded both). The command line wins over the environment, the environment over the
ini file, the ini file over the default; a value that is not one of the option's choices is one
line naming where it came from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Option:
    name: str  # "backend": --egress-backend, EGRESS_HARNESS_BACKEND, egress_backend
    help: str
    default: str | bool | None = None
    choices: tuple[str, ...] = ()
    flag: bool = False
    metavar: str | None = None

    @property
    def flag_name(self) -> str:
        return f"--egress-{self.name.replace('_', '-')}"

    @property
    def env(self) -> str:
        return f"EGRESS_HARNESS_{self.name.upper()}"

    @property
    def ini(self) -> str:
        return f"egress_{self.name}"

    @property
    def dest(self) -> str:
        return f"egress_{self.name}"


BACKENDS = ("local", "kind", "cluster")

OPTIONS = {
    o.name: o
    for o in (
        Option("backend", "where the mesh runs (default: local, the pocket cluster)", "local", BACKENDS),
        Option("istio_version", "Istio version: 1.30, 1.31, a pseudo-version or a release X.Y.Z (default: pinned)"),
        Option("artifacts", "folder for junit.xml, summary.md, summary.json, evidence and mesh logs", "artifacts"),
        Option("dry_run", "print the plan of the kind/cluster backend and exit", False, flag=True),
        Option(
            "spec",
            "test your own egress: run the expectations of this spec (suites/test_egress_spec.py; README)",
            metavar="FILE",
        ),
        Option(
            "keep_mesh",
            "after a failed test, hold the mesh up (any backend) and print how to reach it, until Ctrl-C",
            False,
            flag=True,
        ),
        Option("keep_cluster", "kind: reuse and keep the cluster", False, flag=True),
        Option("cluster_name", "kind: cluster name", "egress-harness"),
        Option("kubeconfig", "cluster backend: kubeconfig of an existing cluster (else $KUBECONFIG)"),
    )
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("egress-harness")
    for o in OPTIONS.values():
        where = f" [env {o.env}, ini {o.ini}]"
        if o.flag:
            group.addoption(o.flag_name, action="store_true", default=None, dest=o.dest, help=o.help + where)
        else:
            # No argparse choices: the environment's and the ini file's values are checked by the
            # same one line (setting()), the command line's too.
            group.addoption(o.flag_name, default=None, dest=o.dest, metavar=o.metavar, help=o.help + where)
        # A string for the flags too: flag() reads 1/0, true/false, yes/no and names the ini key
        # of any other word (pytest's own bool type says only "invalid truth value").
        parser.addini(o.ini, o.help, default=None)  # type None: a string


def _value(config: pytest.Config, o: Option) -> tuple[object, str]:
    """The raw value and where it came from: command line, environment, ini file."""
    value = config.getoption(o.dest, None)
    if value is not None:
        return value, o.flag_name
    if o.env in os.environ:
        return os.environ[o.env], o.env
    return config.getini(o.ini), f"the ini option {o.ini}"


def setting(config: pytest.Config, name: str) -> str | None:
    """A valued option: command line, else environment, else ini file, else its default."""
    o = OPTIONS[name]
    assert not o.flag, name
    value, source = _value(config, o)
    if value is None or value == "":
        return None if o.default is None else str(o.default)
    if o.choices and value not in o.choices:
        raise pytest.UsageError(
            f"egress-harness: {source} is {value!r}, not one of {', '.join(o.choices)}: fix {source}"
        )
    return str(value)


def required(config: pytest.Config, name: str) -> str:
    """A valued option that has a default (the backend, the artifacts folder, the kind cluster's name)."""
    value = setting(config, name)
    assert value is not None, name
    return value


def flag(config: pytest.Config, name: str) -> bool:
    """A yes/no option: given on the command line, else the environment's 1/0, else the ini file's."""
    o = OPTIONS[name]
    assert o.flag, name
    value, source = _value(config, o)
    if isinstance(value, str):
        word = value.strip().lower()
        if word not in _TRUE | _FALSE:
            raise pytest.UsageError(f"egress-harness: {source}={value!r} is not a yes or no: set it to 1 or 0")
        return word in _TRUE
    return bool(value)
