"""kubectl with an explicit kubeconfig (the commands the plan prints and a person would type), and
`kubectl port-forward` with the local port it chose."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.exec_result import ExecResult


@dataclass
class Kubectl:
    path: Path
    kubeconfig: Path
    log: list[str] = field(default_factory=list)

    def argv(self, *args: str) -> list[str]:
        return [str(self.path), f"--kubeconfig={self.kubeconfig}", *args]

    def run(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120.0) -> ExecResult:
        argv = self.argv(*args)
        self.log.append(" ".join(args))
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            return ExecResult(tuple(args), 124, out, f"[harness] kubectl {' '.join(args[:3])} killed after {timeout}s")
        result = ExecResult(tuple(args), proc.returncode, proc.stdout, proc.stderr)
        if check and not result.ok:
            raise RuntimeError(
                f"kubectl {' '.join(args)} failed with exit {proc.returncode}: {proc.stderr.strip()[-500:]}"
            )
        return result

    def json(self, *args: str) -> dict:
        return json.loads(self.run(*args, "-o", "json").stdout)


class PortForward:
    """`kubectl port-forward pod/NAME :PORT` on 127.0.0.1; the local port is read from its output."""

    def __init__(self, kubectl: Kubectl, namespace: str, pod: str, remote_port: int, timeout: float = 20.0):
        self.proc = subprocess.Popen(
            kubectl.argv("port-forward", "-n", namespace, f"pod/{pod}", f":{remote_port}", "--address=127.0.0.1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        self.local_port = 0
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            m = re.search(r"Forwarding from 127\.0\.0\.1:(\d+) ->", line)
            if m:
                self.local_port = int(m.group(1))
                break
            if not line and self.proc.poll() is not None:
                break
        if not self.local_port:
            err = self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else ""
            self.close()
            raise RuntimeError(
                f"kubectl port-forward to {namespace}/{pod}:{remote_port} did not start: {err.strip()[:300]}"
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.local_port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
