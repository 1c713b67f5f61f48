"""The pod network of the kind cluster: one node, ptp veths, host-local addresses, masquerade off the node.

kindnetd (kind's default CNI) is not on the Go module proxy, so the node image carries a static
CNI config instead: for a single node, kindnet's own config reduces to this one (ptp + host-local
+ portmap; kind's images/kindnetd/cmd/kindnetd/cni.go). ptp routes every pod through the node's
netns, so the NetworkPolicy enforcer (kube-router's firewall, iptables FORWARD) sees each packet.
Pods get 198.18.0.0/24 (the project's pod range). No masquerade: the stand-in container on the
kind network sees each pod's own address (the suites tell "from the pod" from "from the gateway"
by it, as on the local mesh), and gets a route to the pod range via the node
(harness/backends/kind.py, route_pods_via_node).
"""

import json

POD_SUBNET = "198.18.0.0/16"  # kind's networking.podSubnet
NODE_POD_CIDR = "198.18.0.0/24"  # what kube-controller-manager gives the first (only) node
SERVICE_SUBNET = "10.96.0.0/16"  # kind's default
CONFLIST_PATH = "/etc/cni/net.d/10-egress-harness.conflist"


def conflist() -> str:
    return (
        json.dumps(
            {
                "cniVersion": "0.4.0",
                "name": "egress-harness",
                "plugins": [
                    {
                        "type": "ptp",
                        "ipMasq": False,
                        "mtu": 1500,
                        "ipam": {
                            "type": "host-local",
                            "dataDir": "/run/cni-ipam-state",
                            "routes": [{"dst": "0.0.0.0/0"}],
                            "ranges": [[{"subnet": NODE_POD_CIDR}]],
                        },
                    },
                    {"type": "portmap", "capabilities": {"portMappings": True}},
                ],
            },
            indent=2,
        )
        + "\n"
    )
