"""harness/local/netpol.py: NetworkPolicy parsing and the hub's iptables rules (pure logic), then one
real check that iptables-restore accepts the rendered rules, in a throwaway network namespace."""

from __future__ import annotations

import copy
import os
import subprocess
import uuid

import pytest

from harness.errors import HarnessError
from harness.local.netpol import CHAIN, EgressPolicy, Peer, PodInfo, parse_policy, render_rules
from harness.manifests import render
from harness.system_packages import find_command

SEED_NAME = "allow-egress-to-istio-system-and-kube-dns"


@pytest.fixture
def seed_policy() -> dict:
    [obj] = render("network-policy", mode="plaintext")
    assert obj["kind"] == "NetworkPolicy"
    return obj


def _policy(spec: dict, namespace: str = "test-egress", name: str = "p") -> dict:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"namespace": namespace, "name": name},
        "spec": spec,
    }


# --- parsing -------------------------------------------------------------------------------------


def test_seed_policy_parses(seed_policy: dict):
    policy = parse_policy(seed_policy)
    assert policy == EgressPolicy(
        namespace="test-egress",
        name=SEED_NAME,
        pod_labels={},
        peers=(
            Peer(namespace_labels={"kube-system": "true"}, ports=(("udp", 53),)),
            Peer(namespace_labels={"istio": "system"}, ports=()),
        ),
    )


def test_pod_selector_match_labels_and_rule_without_to():
    policy = parse_policy(
        _policy(
            {
                "podSelector": {"matchLabels": {"app": "sleep"}},
                "policyTypes": ["Egress"],
                "egress": [{"ports": [{"port": 443}]}],  # no `to`: any destination; protocol defaults to TCP
            }
        )
    )
    assert policy.pod_labels == {"app": "sleep"}
    assert policy.peers == (Peer(namespace_labels=None, ports=(("tcp", 443),)),)
    sleep = PodInfo("test-egress", "sleep", "10.0.1.2", {"app": "sleep"}, "h-sleep")
    assert policy.selects(sleep)
    assert not policy.selects(PodInfo("test-egress", "other", "10.0.1.3", {"app": "other"}, "h-other"))
    assert not policy.selects(PodInfo("default", "sleep", "10.0.3.2", {"app": "sleep"}, "h-dsleep"))


def test_egress_with_no_rules_denies_everything():
    policy = parse_policy(_policy({"podSelector": {}, "policyTypes": ["Egress"]}))
    assert policy.peers == ()


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda s: s.update(policyTypes=["Ingress"]), "policyTypes ['Ingress']"),
        (lambda s: s.update(policyTypes=["Ingress", "Egress"]), "policyTypes ['Ingress', 'Egress']"),
        (lambda s: s.update(ingress=[{}]), "spec.ingress"),
        (
            lambda s: s["podSelector"].update(matchExpressions=[{"key": "app", "operator": "Exists"}]),
            "podSelector.matchExpressions",
        ),
        (lambda s: s["egress"][1]["to"].append({"ipBlock": {"cidr": "10.0.0.0/8"}}), "to entry with ['ipBlock']"),
        (
            lambda s: s["egress"][1]["to"][0].update(podSelector={"matchLabels": {"app": "x"}}),
            "to entry with ['podSelector']",
        ),
        (
            lambda s: s["egress"][1]["to"][0]["namespaceSelector"].update(
                matchExpressions=[{"key": "istio", "operator": "Exists"}]
            ),
            "namespaceSelector.matchExpressions",
        ),
        (lambda s: s["egress"][0]["ports"][0].update(port=1000, endPort=2000), "only protocol and a numeric port"),
        (lambda s: s["egress"][0]["ports"][0].update(port="dns"), "only protocol and a numeric port"),
        (lambda s: s["egress"][0]["ports"][0].update(protocol="SCTP"), "protocol SCTP"),
    ],
    ids=[
        "ingress-type",
        "both-types",
        "ingress-rules",
        "pod-match-expressions",
        "ip-block",
        "pod-selector-peer",
        "ns-match-expressions",
        "port-range",
        "named-port",
        "sctp",
    ],
)
def test_unsupported_policies_are_refused_with_a_clear_error(seed_policy: dict, mutate, fragment: str):
    obj = copy.deepcopy(seed_policy)
    mutate(obj["spec"])
    with pytest.raises(HarnessError) as caught:
        parse_policy(obj)
    message = str(caught.value)
    assert f"NetworkPolicy test-egress/{SEED_NAME}:" in message
    assert fragment in message
    assert "is not supported by the local mesh" in message
    assert "\n" not in message


def test_policy_without_namespace_or_name_is_refused(seed_policy: dict):
    obj = copy.deepcopy(seed_policy)
    del obj["metadata"]["namespace"]
    with pytest.raises(HarnessError, match="metadata.namespace and metadata.name"):
        parse_policy(obj)


# --- rendering ----------------------------------------------------------------------------------

SLEEP = PodInfo("test-egress", "sleep", "10.0.1.2", {"app": "sleep"}, "h-te-sleep")
SLEEP_B = PodInfo("test-egress", "httpbin", "10.0.1.3", {"app": "httpbin"}, "h-te-httpbin")
COREDNS = PodInfo("kube-system", "coredns", "10.0.0.10", {"k8s-app": "kube-dns"}, "h-ks-coredns")
ISTIOD = PodInfo("istio-system", "istiod", "10.0.2.2", {"app": "istiod"}, "h-is-istiod")
GATEWAY = PodInfo("istio-system", "egressgateway", "10.0.2.3", {"istio": "egressgateway"}, "h-is-egress")
DEFAULT_SLEEP = PodInfo("default", "sleep", "10.0.3.2", {"app": "sleep"}, "h-df-sleep")
PODS = [DEFAULT_SLEEP, GATEWAY, SLEEP, COREDNS, ISTIOD, SLEEP_B]
NAMESPACE_LABELS = {
    "kube-system": {"kube-system": "true"},
    "istio-system": {"istio": "system"},
    "default": {},
    "test-egress": {},
}


def _rules_of(rules: str, ifname: str) -> list[str]:
    return [line for line in rules.splitlines() if f" -i {ifname} " in line]


def test_seed_rules_for_selected_and_unselected_pods(seed_policy: dict):
    rules = render_rules([parse_policy(seed_policy)], PODS, NAMESPACE_LABELS)
    lines = rules.splitlines()

    assert lines[:7] == [
        "*filter",
        ":INPUT ACCEPT [0:0]",
        ":FORWARD ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        f":{CHAIN} - [0:0]",
        f"-A FORWARD -j {CHAIN}",
        f"-A {CHAIN} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",  # replies pass, before any DROP
    ]
    assert lines[-1] == "COMMIT" and rules.endswith("\n")

    # Both pods of test-egress are selected ({} selects all): DNS to kube-system pods on udp/53,
    # anything to istio-system pods, then DROP. Destinations are pod IPs, in the pods' order.
    for pod in (SLEEP, SLEEP_B):
        comment = f'-m comment --comment "{pod.namespace}/{pod.name}"'
        assert _rules_of(rules, pod.hub_ifname) == [
            f"-A {CHAIN} -i {pod.hub_ifname} -d 10.0.0.10/32 -p udp --dport 53 {comment} -j ACCEPT",
            f"-A {CHAIN} -i {pod.hub_ifname} -d 10.0.2.3/32 {comment} -j ACCEPT",
            f"-A {CHAIN} -i {pod.hub_ifname} -d 10.0.2.2/32 {comment} -j ACCEPT",
            f"-A {CHAIN} -i {pod.hub_ifname} {comment} -j DROP",
        ]
    # Pods in other namespaces are not selected: no rule mentions them as a source.
    for pod in (DEFAULT_SLEEP, COREDNS, ISTIOD, GATEWAY):
        assert _rules_of(rules, pod.hub_ifname) == []
    # Nothing allows the stand-in or default/sleep as a destination.
    assert "10.0.3.2" not in rules
    # Pods come in (namespace, name) order, whatever order they were given in.
    assert rules.index("h-te-httpbin") < rules.index("h-te-sleep")


def test_relabelled_namespace_changes_destinations(seed_policy: dict):
    labels = copy.deepcopy(NAMESPACE_LABELS)
    labels["kube-system"] = {}  # the seed's label taken away: DNS is no longer allowed
    labels["default"] = {"istio": "system"}  # and default now looks like istio-system
    rules = _rules_of(render_rules([parse_policy(seed_policy)], PODS, labels), SLEEP.hub_ifname)
    assert not any("--dport 53" in line for line in rules)
    assert any(" -d 10.0.3.2/32 " in line for line in rules)
    assert rules[-1].endswith("-j DROP")


def test_no_policies_render_no_pod_rules():
    rules = render_rules([], PODS, NAMESPACE_LABELS)
    assert not any(" -i " in line for line in rules.splitlines())
    assert "COMMIT" in rules


def test_two_policies_selecting_one_pod_are_a_union():
    dns = parse_policy(
        _policy(
            {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [{"namespaceSelector": {"matchLabels": {"kube-system": "true"}}}],
                        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                    }
                ],
            },
            name="dns",
        )
    )
    web = parse_policy(
        _policy(
            {
                "podSelector": {"matchLabels": {"app": "sleep"}},
                "policyTypes": ["Egress"],
                "egress": [{"ports": [{"port": 443}]}],
            },
            name="web",
        )
    )
    rules = render_rules([dns, web], PODS, NAMESPACE_LABELS)
    comment = '-m comment --comment "test-egress/sleep"'
    assert _rules_of(rules, SLEEP.hub_ifname) == [
        f"-A {CHAIN} -i h-te-sleep -d 10.0.0.10/32 -p udp --dport 53 {comment} -j ACCEPT",
        f"-A {CHAIN} -i h-te-sleep -d 10.0.0.10/32 -p tcp --dport 53 {comment} -j ACCEPT",
        f"-A {CHAIN} -i h-te-sleep -p tcp --dport 443 {comment} -j ACCEPT",  # no `to`: any destination
        f"-A {CHAIN} -i h-te-sleep {comment} -j DROP",
    ]
    # httpbin is selected only by the DNS policy: exactly one DROP for it, after its DNS rules.
    httpbin = _rules_of(rules, SLEEP_B.hub_ifname)
    assert [line.rsplit(" ", 1)[-1] for line in httpbin] == ["ACCEPT", "ACCEPT", "DROP"]


# --- the real thing: iptables-restore accepts it ------------------------------------------------


@pytest.fixture
def throwaway_netns():
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace")
    for tool in ("ip", "iptables-restore"):
        # make test installs them (its tests using this are marked `packages`): a failure, not a skip.
        assert find_command(tool), f"{tool} is not installed (apt-get install iproute2 iptables)"
    name = f"eh-netpol-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, text=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


@pytest.mark.packages
def test_iptables_restore_accepts_the_rendered_rules(seed_policy: dict, throwaway_netns: str):
    dns = _policy(
        {
            "podSelector": {"matchLabels": {"app": "sleep"}},
            "policyTypes": ["Egress"],
            "egress": [{"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "UDP", "port": 53}]}],
        },
        name="extra",
    )
    rules = render_rules([parse_policy(seed_policy), parse_policy(dns)], PODS, NAMESPACE_LABELS)
    ns_exec = ["ip", "netns", "exec", throwaway_netns]
    tested = subprocess.run(
        [*ns_exec, "iptables-restore", "--test"], input=rules, capture_output=True, text=True, timeout=30
    )
    assert tested.returncode == 0, f"iptables-restore --test refused the rules: {tested.stderr}\n{rules}"

    # And the check can fail: a broken line is refused with its line number.
    broken = rules.replace("--dport 53", "--dport fifty-three", 1)
    refused = subprocess.run(
        [*ns_exec, "iptables-restore", "--test"], input=broken, capture_output=True, text=True, timeout=30
    )
    assert refused.returncode != 0
    line = rules.splitlines().index(next(r for r in rules.splitlines() if "--dport 53" in r)) + 1
    assert '"fifty-three"' in refused.stderr and f"Error occurred at line: {line}" in refused.stderr, refused.stderr
