"""The pocket cluster's network: one hub namespace that routes between pod namespaces.

Every pod namespace gets one veth whose other end lives in the hub (never in the host namespace),
a /32 address and a default route via the link-local gateway 169.254.1.1, which the hub holds on
each of its veth ends. So every packet between pods, and between a pod and the "internet"
namespace, is routed by the hub and crosses the hub's FORWARD chain, where NetworkPolicy is
enforced. The hub has no route off the machine and the host namespace is never touched.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from harness.local.netns import Netns

POD_CIDR = ipaddress.ip_network("198.18.0.0/16")
INTERNET_CIDR = ipaddress.ip_network("203.0.113.0/24")
LINK_GATEWAY = "169.254.1.1"


@dataclass
class Endpoint:
    """A namespace plugged into the hub."""

    netns: Netns
    address: str
    hub_ifname: str


@dataclass
class Fabric:
    run_id: str
    hub: Netns = field(init=False)
    _next_pod: int = field(default=10, init=False)
    _next_inet: int = field(default=10, init=False)
    _next_if: int = field(default=0, init=False)
    endpoints: dict[str, Endpoint] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.hub = Netns(f"eh-{self.run_id}-hub")

    def create(self) -> None:
        self.hub.create()
        self.hub.sysctl("net.ipv4.ip_forward", "1")
        # Each pod's packets must leave its veth with its own address; strict reverse-path
        # filtering would drop pod→pod traffic arriving on a /32 route.
        self.hub.sysctl("net.ipv4.conf.all.rp_filter", "0")
        self.hub.sysctl("net.ipv4.conf.default.rp_filter", "0")

    def allocate(self, internet: bool = False) -> str:
        if internet:
            addr = INTERNET_CIDR.network_address + self._next_inet
            self._next_inet += 1
        else:
            addr = POD_CIDR.network_address + self._next_pod
            self._next_pod += 1
        return str(addr)

    def plug(self, ns: Netns, address: str) -> Endpoint:
        """Wire `ns` to the hub with `address`/32. The namespace must exist."""
        self._next_if += 1
        hub_if = f"v{self._next_if}"
        self.hub.ip("link", "add", hub_if, "type", "veth", "peer", "name", "eth0", "netns", ns.name)
        self.hub.ip("addr", "add", f"{LINK_GATEWAY}/32", "dev", hub_if)
        self.hub.ip("link", "set", hub_if, "up")
        self.hub.ip("route", "add", f"{address}/32", "dev", hub_if)
        ns.ip("addr", "add", f"{address}/32", "dev", "eth0")
        ns.ip("link", "set", "eth0", "up")
        ns.ip("route", "add", LINK_GATEWAY, "dev", "eth0", "scope", "link")
        ns.ip("route", "add", "default", "via", LINK_GATEWAY, "dev", "eth0")
        ep = Endpoint(ns, address, hub_if)
        self.endpoints[ns.name] = ep
        return ep

    def unplug(self, ns: Netns) -> None:
        ep = self.endpoints.pop(ns.name, None)
        if ep is not None and self.hub.exists():
            # Deleting one end of a veth deletes both; the /32 route goes with it.
            self.hub.exec(["ip", "link", "del", ep.hub_ifname])

    def destroy(self) -> None:
        self.endpoints.clear()
        self.hub.delete()
