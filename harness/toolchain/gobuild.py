"""One Go build in a throwaway wrapper module, cached by a content key, with a log file and progress.

Why a wrapper module: the Go module proxy serves k8s.io/kubernetes and etcd's server module, but
their go.mod files point their sibling modules at local directories (`=> ./staging/...`), so
`go install mod@version` refuses them. A module of our own that requires the program's module and
`replace`s each sibling with its published version builds the same code (the approach of
/work/shared/notes/kind-from-source.md). Go verifies every module against sum.golang.org.

A build is skipped when `<dir>/done.json` exists: the directory name carries the key, so a changed
pin is a new directory and never a stale binary. Each build writes `<cache_root()>/toolchain/logs/
<name>-<key>.log`; a failure raises one HarnessError line that names the program and that log.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.cache import cache_root
from harness.console import say
from harness.errors import HarnessError
from harness.istio_binaries import refuse_build_if_forbidden
from harness.system_packages import GO_DIRS, GO_MINIMUM, find_go

_ADDED_FIELDS = ("module_files",)


@dataclass(frozen=True)
class GoProgram:
    """What to build. `packages` are import paths of main packages, or '.' with `main_go`."""

    name: str
    version: str
    requires: tuple[tuple[str, str], ...]  # (module, version)
    packages: tuple[str, ...]
    replaces: tuple[tuple[str, str, str], ...] = ()  # (module, to module, to version)
    main_go: str = ""  # source of a main package of our own (then packages == ('.',))
    # A module of our own given whole, as (file name, text) with its go.mod and go.sum: built as it
    # is (-mod=readonly, no tidy), so the checked-in go.sum pins every module it needs.
    module_files: tuple[tuple[str, str], ...] = ()
    binary: str = ""  # the output name of that main package
    ldflags: tuple[str, ...] = ("-s", "-w")
    tags: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = (("CGO_ENABLED", "0"),)
    outputs: tuple[str, ...] = field(default=())  # binaries that must exist afterwards (after renames)
    renames: tuple[tuple[str, str], ...] = ()  # go names a binary after its package path: server/v3 -> "server"

    def key(self, go_version: str) -> str:
        # A field added after keys were in use counts only once set, so older keys (the cached
        # builds and the kind image tags derived from them) stay what they were.
        names = [k for k in sorted(self.__dataclass_fields__) if k not in _ADDED_FIELDS or getattr(self, k)]
        spec = json.dumps(
            [self.__dict__.get(k) for k in names] + [go_version],
            sort_keys=True,
            default=list,
        )
        return hashlib.sha256(spec.encode()).hexdigest()[:12]


def toolchain_dir() -> Path:
    return cache_root() / "toolchain"


def go_binary() -> str:
    go = find_go()  # PATH, then the usual install places: where Istio's build looks too
    if go is None:
        need = ".".join(map(str, GO_MINIMUM))
        raise HarnessError(
            f"Go is needed to build the harness's programs from the module proxy, and none was found on PATH or in "
            f"{', '.join(GO_DIRS)}: install Go >= {need}"
        )
    return go


def go_version(go: str) -> str:
    return subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()


def program_dir(prog: GoProgram, go: str | None = None) -> Path:
    go = go or go_binary()
    return toolchain_dir() / f"{prog.name}-{prog.version}-{prog.key(go_version(go))}"


def log_path(prog: GoProgram, go: str | None = None) -> Path:
    return toolchain_dir() / "logs" / f"{program_dir(prog, go).name}.log"


def is_built(prog: GoProgram) -> bool:
    return (program_dir(prog) / "done.json").exists()


def go_mod_text(prog: GoProgram) -> str:
    lines = [f"module egress-harness.invalid/{prog.name}", "", "go 1.24.0", "", "require ("]
    lines += [f"\t{m} {v}" for m, v in prog.requires]
    lines.append(")")
    if prog.replaces:
        lines += ["", "replace ("]
        lines += [f"\t{m} => {to} {v}" for m, to, v in prog.replaces]
        lines.append(")")
    return "\n".join(lines) + "\n"


def tools_go_text(prog: GoProgram) -> str:
    """Blank imports of the main packages, so `go mod tidy` records everything they need."""
    imports = "\n".join(f'\t_ "{p}"' for p in prog.packages)
    return f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n"


def _run_logged(argv: list[str], *, cwd: Path, env: dict[str, str], log, what: str, progress: bool) -> None:
    log.write(f"$ {' '.join(argv)}\n")
    log.flush()
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    count = [0]
    stop = threading.Event()

    def heartbeat() -> None:  # one line a minute while a long compile runs
        while not stop.wait(60):
            say(f"  … {what}: {count[0]} packages compiled, {time.monotonic() - started:.0f}s")

    beat = threading.Thread(target=heartbeat, daemon=True)
    if progress:
        beat.start()
    assert proc.stdout is not None
    for line in proc.stdout:
        log.write(line)
        if not line.startswith(("go: ", "#")):
            count[0] += 1
    rc = proc.wait()
    stop.set()
    log.flush()
    if rc != 0:
        raise subprocess.CalledProcessError(rc, argv)


def ensure_program(prog: GoProgram) -> Path:
    """The program's bin directory, built now if its key has no finished build. Concurrent callers
    (a background `make kind-images` and a run) wait for one build instead of starting a second."""
    import fcntl

    go = go_binary()
    lock = toolchain_dir() / "locks" / f"{prog.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        return _ensure_locked(prog, go)


def _ensure_locked(prog: GoProgram, go: str) -> Path:
    if os.environ.get("GOSUMDB", "").strip() == "off":
        raise HarnessError("GOSUMDB=off: the harness relies on Go's checksum database for what it builds: unset it")
    out = program_dir(prog, go)
    if (out / "done.json").exists():
        return out / "bin"
    refuse_build_if_forbidden(f"{prog.name} {prog.version}")
    log_file = log_path(prog, go)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    src, bin_tmp = out / "src", out / "bin.tmp"
    src.mkdir(parents=True)
    bin_tmp.mkdir()
    if prog.module_files:
        for name, text in prog.module_files:
            (src / name).write_text(text)
    else:
        (src / "go.mod").write_text(go_mod_text(prog))
        if prog.main_go:
            (src / "main.go").write_text(prog.main_go)
        else:
            (src / "tools.go").write_text(tools_go_text(prog))
    if prog.module_files or prog.main_go:  # a main package of our own, in src
        targets = ["-o", str(bin_tmp / (prog.binary or prog.name)), "."]
    else:
        targets = ["-o", str(bin_tmp) + "/", *prog.packages]
    env = dict(os.environ) | dict(prog.env) | {"GOFLAGS": "-mod=readonly" if prog.module_files else "-mod=mod"}
    what = f"{prog.name} {prog.version}"
    say(f"building {what} from the Go module proxy (log: {log_file})")
    started = time.monotonic()
    build = [go, "build", "-v", "-trimpath", "-ldflags", " ".join(prog.ldflags)]
    if prog.tags:
        build += ["-tags", " ".join(prog.tags)]
    try:
        with log_file.open("w") as log:
            if not prog.module_files:
                _run_logged([go, "mod", "tidy"], cwd=src, env=env, log=log, what=what, progress=False)
            _run_logged(build + targets, cwd=src, env=env, log=log, what=what, progress=True)
    except subprocess.CalledProcessError:
        lines = [ln for ln in log_file.read_text().splitlines() if ln.strip() and not ln.startswith("go: downloading")]
        raise HarnessError(
            f"building {what} failed: {(lines[-1] if lines else 'no output')[:200]} (log: {log_file})"
        ) from None
    for old, new in prog.renames:
        if (bin_tmp / old).exists():
            os.replace(bin_tmp / old, bin_tmp / new)
    missing = [b for b in prog.outputs if not (bin_tmp / b).exists()]
    if missing:
        raise HarnessError(f"building {what} produced no {', '.join(missing)} (log: {log_file})")
    os.replace(bin_tmp, out / "bin")
    shutil.rmtree(src, ignore_errors=True)
    seconds = time.monotonic() - started
    (out / "done.json").write_text(
        json.dumps(
            {
                "program": prog.name,
                "version": prog.version,
                "seconds": round(seconds, 1),
                "go": go_version(go),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )
    )
    say(f"built {what} in {seconds:.0f}s")
    return out / "bin"
