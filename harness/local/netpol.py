"""Kubernetes NetworkPolicy, enforced by packet filtering in the fabric's hub namespace.

Supported, because the seed's policy uses it: policyTypes [Egress]; podSelector {} or matchLabels;
egress rules whose `to` holds namespaceSelector.matchLabels (or is absent: anywhere) and whose
`ports` hold protocol + numeric port. Anything else is refused with a clear error, never ignored.

Semantics follow Kubernetes: a pod selected by any Egress policy may only send what some rule of
some selecting policy allows; replies to allowed connections pass (conntrack). Pods nobody selects
are unrestricted. Denied packets are dropped, so a client sees a connect timeout, as on kindnet.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import HarnessError

CHAIN = "EH-NETPOL"
# The label the API server sets on every namespace (immutable), which policies may select.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    address: str
    labels: dict[str, str]
    hub_ifname: str


@dataclass(frozen=True)
class Peer:
    namespace_labels: dict[str, str] | None  # None: any destination
    ports: tuple[tuple[str, int], ...]  # (protocol, port); empty: all ports


@dataclass(frozen=True)
class EgressPolicy:
    namespace: str
    name: str
    pod_labels: dict[str, str]  # empty: every pod in the namespace
    peers: tuple[Peer, ...]

    def selects(self, pod: PodInfo) -> bool:
        return pod.namespace == self.namespace and all(pod.labels.get(k) == v for k, v in self.pod_labels.items())


def _refuse(where: str, what: str) -> HarnessError:
    return HarnessError(
        f"NetworkPolicy {where}: {what} is not supported by the local mesh "
        f"(supported: Egress policies with podSelector, namespaceSelector.matchLabels and ports)"
    )


def _match_labels(selector: dict | None, where: str, field: str) -> dict[str, str]:
    selector = selector or {}
    unknown = set(selector) - {"matchLabels"}
    if unknown:
        raise _refuse(where, f"{field}.{sorted(unknown)[0]}")
    return {str(k): str(v) for k, v in (selector.get("matchLabels") or {}).items()}


def parse_policy(obj: dict) -> EgressPolicy:
    meta = obj.get("metadata") or {}
    ns, name = meta.get("namespace"), meta.get("name")
    if not ns or not name:
        raise HarnessError("NetworkPolicy without metadata.namespace and metadata.name: set both")
    where = f"{ns}/{name}"
    spec = obj.get("spec") or {}
    unknown = set(spec) - {"podSelector", "policyTypes", "egress"}
    if unknown:
        raise _refuse(where, f"spec.{sorted(unknown)[0]}")
    # Kubernetes: without policyTypes, Ingress is always implied, Egress when egress rules exist.
    types = spec.get("policyTypes") or (["Ingress", "Egress"] if "egress" in spec else ["Ingress"])
    if types != ["Egress"]:
        raise _refuse(where, f"policyTypes {types}")
    pod_labels = _match_labels(spec.get("podSelector"), where, "podSelector")
    peers: list[Peer] = []
    for i, rule in enumerate(spec.get("egress") or []):
        unknown = set(rule) - {"to", "ports"}
        if unknown:
            raise _refuse(where, f"egress[{i}].{sorted(unknown)[0]}")
        ports: list[tuple[str, int]] = []
        for port in rule.get("ports") or []:
            if set(port) - {"protocol", "port"} or not isinstance(port.get("port"), int):
                raise _refuse(where, f"egress[{i}].ports entry {port} (only protocol and a numeric port)")
            proto = str(port.get("protocol", "TCP")).upper()
            if proto not in ("TCP", "UDP"):
                raise _refuse(where, f"protocol {proto}")
            ports.append((proto.lower(), port["port"]))
        targets = rule.get("to")
        if not targets:
            peers.append(Peer(None, tuple(ports)))
            continue
        for target in targets:
            if set(target) != {"namespaceSelector"}:
                raise _refuse(
                    where, f"egress[{i}].to entry with {sorted(set(target) - {'namespaceSelector'}) or 'no selector'}"
                )
            peers.append(Peer(_match_labels(target["namespaceSelector"], where, "namespaceSelector"), tuple(ports)))
    return EgressPolicy(ns, name, pod_labels, tuple(peers))


def render_rules(policies: list[EgressPolicy], pods: list[PodInfo], namespace_labels: dict[str, dict[str, str]]) -> str:
    """The hub's filter table as iptables-restore input (the hub holds nothing else). Every
    namespace also carries its name as kubernetes.io/metadata.name, as the API server sets it."""
    namespace_labels = {ns: {NAMESPACE_NAME_LABEL: ns, **own} for ns, own in namespace_labels.items()}
    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", f":{CHAIN} - [0:0]"]
    lines.append(f"-A FORWARD -j {CHAIN}")
    lines.append(f"-A {CHAIN} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT")
    for pod in sorted(pods, key=lambda p: (p.namespace, p.name)):
        selecting = [p for p in policies if p.selects(pod)]
        if not selecting:
            continue
        comment = f'--comment "{pod.namespace}/{pod.name}"'
        for policy in selecting:
            for peer in policy.peers:
                if peer.namespace_labels is None:
                    dests: list[str | None] = [None]
                else:
                    dests = [
                        other.address
                        for other in pods
                        if all(
                            namespace_labels.get(other.namespace, {}).get(k) == v
                            for k, v in peer.namespace_labels.items()
                        )
                    ]
                for dest in dests:
                    dest_part = f" -d {dest}/32" if dest else ""
                    if peer.ports:
                        for proto, port in peer.ports:
                            lines.append(
                                f"-A {CHAIN} -i {pod.hub_ifname}{dest_part} -p {proto} --dport {port} "
                                f"-m comment {comment} -j ACCEPT"
                            )
                    else:
                        lines.append(f"-A {CHAIN} -i {pod.hub_ifname}{dest_part} -m comment {comment} -j ACCEPT")
        lines.append(f"-A {CHAIN} -i {pod.hub_ifname} -m comment {comment} -j DROP")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"
