"""One layout for the mesh-wide evidence of a failed test, on every backend:

    mesh/<namespace>.<pod>/config_dump.json   each proxy's config (with endpoints where the backend has them)
                           stats.json         its counters, Envoy's JSON form
                           clusters.json      its clusters and endpoints
                           certs.json         its certificates
                           edition.cnn.com-report.txt   its listeners and the clusters that matter here
                           istio-proxy.log    its log
    mesh/istiod-syncz.json, istiod-configz.json, upstream-records.json, …

`<namespace>.<pod>` is the pod's logical name (pod_table.py: `default/sleep` → `default.sleep`),
whatever the backend calls it, so `python -m harness.config_diff` pairs a local failure's proxies
with a kind failure's. Each backend adds what only it has (the local hub's iptables rules, kind's
pod YAML and events) beside these.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

# What each proxy's folder holds, and the Envoy admin path each is read from (through pilot-agent on
# Kubernetes, the admin port on the local mesh); stats.json is flattened to {name: value}
# (envoy_admin.stat_values), the form config_diff and the suites read.
PROXY_FILES = {
    "config_dump.json": "config_dump?include_eds",
    "stats.json": "stats?format=json",
    "clusters.json": "clusters?format=json",
    "certs.json": "certs",
}
REPORT = "edition.cnn.com-report.txt"


def proxy_dir(directory: Path, pod: str) -> Path:
    """The folder of the pod with logical name `pod` ("default/sleep")."""
    d = directory / pod.replace("/", ".")
    d.mkdir(parents=True, exist_ok=True)
    return d


def save(directory: Path, name: str, fetch: Callable[[], Any]) -> None:
    """Write what fetch() returns (JSON for dicts and lists); a fetch that fails leaves its traceback
    in `<name>.error.txt`, so one broken source does not hide the others."""
    path = directory / name
    try:
        value = fetch()
    except Exception:  # noqa: BLE001 - one broken source must not hide the others
        path.with_name(path.name + ".error.txt").write_text(traceback.format_exc())
        return
    if isinstance(value, (dict, list)):
        path.write_text(json.dumps(value, indent=2, default=str))
    else:
        path.write_text(str(value))


def edition_report(dump: dict) -> str:
    """What a proxy has for edition.cnn.com: its listeners, and its clusters with their endpoints
    (the first thing to read when traffic does not show up where it should)."""
    from harness.envoy_admin import cluster_names, listener_names

    lines = ["listeners:"]
    lines += [f"  {n}" for n in listener_names(dump)]
    lines.append("clusters mentioning edition.cnn.com or the egress gateway:")
    lines += [f"  {n}" for n in cluster_names(dump) if "edition.cnn.com" in n or "egressgateway" in n]
    routes = [r for r in json.dumps(dump).split('"') if "edition.cnn.com" in r]
    lines.append(f"strings mentioning edition.cnn.com in the config: {len(routes)}")
    return "\n".join(lines) + "\n"


def save_proxy(directory: Path, pod: str, fetchers: Mapping[str, Callable[[], Any]]) -> Path:
    """One proxy's folder: each file of PROXY_FILES from its fetcher (a dict), and the report made
    from its config_dump."""
    assert set(fetchers) == set(PROXY_FILES), sorted(fetchers)
    d = proxy_dir(directory, pod)
    for name, fetch in fetchers.items():
        save(d, name, fetch)
    save(d, REPORT, lambda: edition_report(json.loads((d / "config_dump.json").read_text())))
    return d
