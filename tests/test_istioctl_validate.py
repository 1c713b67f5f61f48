"""harness/istioctl_validate.py with the real istioctl: each rendering is validated once per process
(the session's check at start, then every apply of the same objects finds it accepted), and a
refused object is refused every time."""

from __future__ import annotations

import pytest

from harness import manifests
from harness.errors import ManifestRejected
from harness.istioctl_validate import IstioctlValidator


def test_each_object_is_validated_once_and_a_refusal_every_time(istio_binaries):
    objs = manifests.render("http/gateway", mode="istio-mutual")
    first = IstioctlValidator(istio_binaries.istioctl)
    first.validate(objs)
    again = IstioctlValidator(istio_binaries.istioctl)
    again.validate(objs)
    again.validate(list(reversed(objs)))
    assert (first.runs, again.runs) in ((1, 0), (0, 0)), "validated again"  # (0, 0): the session's check came first

    bad = {**objs[0], "spec": {**objs[0]["spec"], "bogus": 1}}
    for _ in range(2):
        with pytest.raises(ManifestRejected):
            again.validate([bad])
    assert again.runs == 2
