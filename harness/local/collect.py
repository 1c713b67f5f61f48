"""Mesh-wide evidence of the local backend, written for a failed test."""

from __future__ import annotations

import json
import shutil
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.local.mesh import LocalMesh


def _save(directory: Path, name: str, fetch: Callable[[], Any]) -> None:
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


def edition_report(admin) -> str:
    """What this proxy has for edition.cnn.com: its listeners, and its clusters with their
    endpoints (the first thing to read when traffic does not show up where it should)."""
    from harness.envoy_admin import cluster_names, listener_names

    dump = admin.config_dump()
    lines = ["listeners:"]
    lines += [f"  {n}" for n in listener_names(dump)]
    lines.append("clusters mentioning edition.cnn.com or the egress gateway:")
    lines += [f"  {n}" for n in cluster_names(dump) if "edition.cnn.com" in n or "egressgateway" in n]
    routes = [r for r in json.dumps(dump).split('"') if "edition.cnn.com" in r]
    lines.append(f"strings mentioning edition.cnn.com in the config: {len(routes)}")
    return "\n".join(lines) + "\n"


def collect_local(mesh: LocalMesh, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for proxy in mesh.proxies():
        pod = f"{proxy.spec.namespace}.{proxy.spec.pod_name}"
        d = directory / pod
        d.mkdir(exist_ok=True)
        admin = proxy.admin
        _save(d, "config_dump.json", partial(admin.config_dump, include_eds=True))
        _save(d, "stats.json", partial(admin.stats, ""))
        _save(d, "clusters.json", admin.clusters_json)
        _save(d, "certs.json", admin.certs)
        _save(d, "edition.cnn.com-report.txt", partial(edition_report, admin))
        if proxy.log_path.exists():
            shutil.copyfile(proxy.log_path, d / "istio-proxy.log")
    if mesh.istiod is not None:
        _save(directory, "istiod-syncz.json", mesh.istiod.syncz)
        _save(directory, "istiod-configz.json", mesh.istiod.configz)
    _save(directory, "upstream-records.json", lambda: mesh.upstream()._call("GET", "/records"))
    _save(directory, "manifests-applied.json", lambda: sorted(mesh.manifests.applied))
    # What istiod reads, as the API server holds it (Secrets by name only: they carry keys).
    _save(
        directory,
        "api-objects.yaml",
        lambda: (
            mesh.registry.kubectl.run(
                "get",
                "namespaces,nodes,pods,services,endpointslices,networkpolicies,serviceentries,gateways,"
                "virtualservices,destinationrules,envoyfilters,sidecars",
                "-A",
                "-o",
                "yaml",
            ).stdout
        ),
    )
    _save(directory, "api-secrets.txt", lambda: mesh.registry.kubectl.run("get", "secrets", "-A").stdout)
    for log in mesh.log_dir.glob("*.log"):
        if not log.name.endswith("istio-proxy.log"):
            shutil.copyfile(log, directory / log.name)
    rules = mesh.log_dir / "hub-iptables.rules"
    if rules.exists():
        shutil.copyfile(rules, directory / "networkpolicy-iptables.rules")
