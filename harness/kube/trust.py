"""The gateway's credentialName Secrets on Kubernetes (the local mesh, kind and a cluster alike):
the stand-in's CA, a CA that did not sign it, and the gateway's client certificate; and the `trust`
values the scenario templates name them by."""

from __future__ import annotations

from harness import gateway_api
from harness.kube.templates import render_fixture
from harness.pki import RunPKI
from harness.pod_table import GATEWAY_SPIFFE

GATEWAY_NAMESPACE = "istio-system"
# The namespace of the seed's Gateway API Gateway, where istiod deploys its gateway: Istio reads a
# DestinationRule's credentialName from the namespace of the proxy that uses it, so the same
# Secrets are there too for the Gateway API's origination.
GATEWAY_API_NAMESPACE = gateway_api.SEED_NAMESPACE
TRUST_NAMES = {"trust": "edition-cnn-com-ca", "wrong_trust": "untrusted-ca", "client": "edition-cnn-com-client"}
# What a dry-run plan shows where a PEM is made at run time.
PEM = "<PEM: {} (made at run time)>"


def gateway_trust_pems(pki: RunPKI) -> dict[str, str]:
    """What the gateway's credentialName Secrets hold on Kubernetes (kind and cluster alike): the
    stand-in's CA, a CA that did not sign it, and a client certificate whose DNS SAN the
    mutual-origination check names."""
    untrusted = pki.other_public_ca()
    client = pki.public_ca.issue_client(
        "gateway-client",
        "istio-egressgateway",
        dns_names=["istio-egressgateway.istio-system.svc.cluster.local"],
        uris=[GATEWAY_SPIFFE],
    )
    return {
        "public_ca": pki.public_ca.cert_pem.decode(),
        "untrusted_ca": untrusted.cert_pem.decode(),
        "client_cert": client.cert_pem.decode(),
        "client_key": client.key_pem.decode(),
    }


def trust_names(prefix: str = "") -> dict[str, str]:
    """The Secrets' names: TRUST_NAMES, with `prefix` on a cluster the harness shares with its
    owner (`eh-<run>-`: the gateway's namespace is theirs, and may hold Secrets of these names)."""
    return {key: prefix + name for key, name in TRUST_NAMES.items()}


def trust_values(prefix: str = "") -> dict[str, dict[str, str]]:
    """`trust` template values on Kubernetes: credentialName secrets in the gateway's namespace."""
    return {key: {"credential_name": name} for key, name in trust_names(prefix).items()}


def trust_secrets_yaml(
    pems: dict[str, str] | None = None,
    run_labels: dict[str, str] | None = None,
    *,
    gateway_api: bool = False,
    prefix: str = "",
) -> str:
    """The three Secrets (fixtures/kind/trust-secrets.yaml.j2) in the gateway's namespace, and
    with `gateway_api` in the Gateway API's deployed gateway's too."""
    namespaces = (GATEWAY_NAMESPACE, GATEWAY_API_NAMESPACE) if gateway_api else (GATEWAY_NAMESPACE,)
    return (
        "\n---\n".join(_trust_secrets_in(ns, pems or {}, run_labels or {}, prefix).rstrip("\n") for ns in namespaces)
        + "\n"
    )


def _trust_secrets_in(namespace: str, pems: dict[str, str], run_labels: dict[str, str], prefix: str) -> str:
    names = trust_names(prefix)
    return render_fixture(
        "trust-secrets.yaml.j2",
        gateway_namespace=namespace,
        run_labels=run_labels,
        trust_name=names["trust"],
        wrong_trust_name=names["wrong_trust"],
        client_name=names["client"],
        public_ca_pem=pems.get("public_ca", PEM.format("test public CA that signs the stand-in")),
        untrusted_ca_pem=pems.get("untrusted_ca", PEM.format("a CA that signed nothing here")),
        client_cert_pem=pems.get("client_cert", PEM.format("the gateway's client certificate")),
        client_key_pem=pems.get("client_key", PEM.format("its key")),
    )
