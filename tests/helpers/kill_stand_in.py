"""A test module that tests/test_faults.py runs in a child pytest (no test_ prefix: `make test` does
not collect it). The stand-in is SIGKILLed mid-run, as a crash would end it; the test after that
sends traffic and finds it failing, and the ones after it would each find the control API gone.
The plugin must say once that the stand-in exited and stop the session."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from harness.backend import TEST_EGRESS_SLEEP
from harness.curl_result import curl_command
from harness.wait import poll

URL = "https://edition.cnn.com/politics"


def test_reads_the_stand_in(mesh):
    mesh.upstream().mark()


def test_kills_the_stand_in(mesh):
    proc = mesh.upstream_process
    Path(os.environ["EH_STAND_IN_PID"]).write_text(f"{proc.pid} {mesh.run_id}")
    os.kill(proc.pid, signal.SIGKILL)  # the session's own child, by pid
    poll("the stand-in to have exited", lambda: proc.popen.poll() is not None, timeout=10)


def test_traffic_after_it_died(mesh):
    # test-egress/sleep has no sidecar: straight to the stand-in's address, where nothing listens now.
    res = mesh.exec(TEST_EGRESS_SLEEP, curl_command(URL, follow=False))
    assert res.exit_code == 0, f"curl exit {res.exit_code}: {res.stderr.strip()}"


def test_reads_it_again(mesh):
    mesh.upstream().mark()


def test_and_again(mesh):
    mesh.upstream().records()
