"""Mesh-wide evidence of the local backend, written for a failed test, in the layout of every
backend (harness/mesh_evidence.py), plus what only the local mesh has (the hub's iptables rules)."""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from harness.mesh_evidence import save, save_proxy

if TYPE_CHECKING:
    from harness.local.mesh import LocalMesh


def collect_local(mesh: LocalMesh, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for proxy in mesh.proxies():
        admin = proxy.admin
        d = save_proxy(
            directory,
            f"{proxy.spec.namespace}/{proxy.spec.pod_name}",
            {
                "config_dump.json": partial(admin.config_dump, include_eds=True),
                "stats.json": partial(admin.stats, ""),
                "clusters.json": admin.clusters_json,
                "certs.json": admin.certs,
            },
        )
        if proxy.log_path.exists():
            shutil.copyfile(proxy.log_path, d / "istio-proxy.log")
    if mesh.istiod is not None:
        save(directory, "istiod-syncz.json", mesh.istiod.syncz)
        save(directory, "istiod-configz.json", mesh.istiod.configz)
    save(directory, "upstream-records.json", lambda: mesh.upstream()._call("GET", "/records"))
    save(directory, "manifests-applied.json", lambda: sorted(mesh.manifests.applied))
    # What istiod reads, as the API server holds it (Secrets by name only: they carry keys).
    save(
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
    save(directory, "api-secrets.txt", lambda: mesh.registry.kubectl.run("get", "secrets", "-A").stdout)
    for log in mesh.log_dir.glob("*.log"):
        if not log.name.endswith("istio-proxy.log"):
            shutil.copyfile(log, directory / log.name)
    rules = mesh.log_dir / "hub-iptables.rules"
    if rules.exists():
        shutil.copyfile(rules, directory / "networkpolicy-iptables.rules")
