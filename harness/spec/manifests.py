"""A team's own YAML, read as it is: each object with the file and line it starts on, so that a
refusal (a kind the harness does not apply, a manifest `istioctl validate` rejects) is one line
naming both; and the credentialName Secrets the spec maps to the test PKI.

What is applied: Istio's config kinds and NetworkPolicy, through the backend's one apply path
(which waits until every proxy runs them); a Namespace's labels, through the backend's
`label_namespace` (the harness makes the namespaces of the sources itself). Anything else (a
Deployment: the spec's `sources:` are the workloads) is refused before the mesh starts.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import yaml

from harness.errors import ManifestRejected
from harness.istioctl_validate import IstioctlValidator
from harness.pki import RunPKI
from harness.spec.load import SpecError
from harness.spec.model import Spec, Where
from harness.sync import ISTIO_KINDS, is_istio_config

APPLIED_KINDS = ISTIO_KINDS | {"NetworkPolicy"}


@dataclass(frozen=True)
class Manifest:
    obj: dict
    where: Where

    @property
    def label(self) -> str:
        meta = self.obj.get("metadata") or {}
        return f"{self.obj.get('kind')} {meta.get('namespace')}/{meta.get('name')}"


def read_manifests(spec: Spec) -> list[Manifest]:
    """Every object of the spec's manifests, in order; SpecError (file:line) for one that is no
    object the harness applies."""
    out: list[Manifest] = []
    for file in spec.manifests:
        text = file.read_text()
        try:
            nodes = list(yaml.compose_all(text))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise SpecError(
                f"{file}:{mark.line + 1 if mark else 1}: not YAML: {getattr(exc, 'problem', exc)}"
            ) from None
        for node in nodes:
            if node is None:
                continue
            where = Where(file, node.start_mark.line + 1)
            obj = yaml.safe_load(yaml.serialize(node))
            if obj is None:
                continue
            if not isinstance(obj, dict) or not obj.get("kind") or not obj.get("apiVersion"):
                raise SpecError(f"{where}: a document that is no Kubernetes object (apiVersion, kind, metadata)")
            meta = obj.setdefault("metadata", {}) or {}
            if not meta.get("name"):
                raise SpecError(f"{where}: {obj['kind']} has no metadata.name")
            kind = obj["kind"]
            if kind == "List":
                raise SpecError(f"{where}: a List: write its items as documents separated by ---")
            if kind not in APPLIED_KINDS | {"Namespace"}:
                raise SpecError(
                    f"{where}: the harness does not apply a {kind} (it applies Istio config, NetworkPolicy and "
                    "Namespace labels; workloads are the spec's `sources:`, Secrets its `secrets:`): remove it"
                )
            if kind != "Namespace":
                meta.setdefault("namespace", "default")  # as kubectl apply without -n
            out.append(Manifest(obj, where))
    return out


def validate(manifests: list[Manifest], validator: IstioctlValidator) -> None:
    """The real `istioctl validate`: once over every object (one process for a spec of hundreds);
    only if it refuses, object by object, so that the refusal names the object's file and line."""
    istio = [m for m in manifests if is_istio_config(m.obj)]
    try:
        validator.validate([m.obj for m in istio])
        return
    except ManifestRejected as whole:
        refusal = whole
    for m in istio:
        try:
            validator.validate([m.obj])
        except ManifestRejected as exc:
            raise SpecError(f"{m.where}: {m.label}: {exc}") from None
    raise SpecError(f"{istio[0].where if istio else 'the manifests'}: {refusal}")  # only together: name the first


def namespace_labels(manifests: list[Manifest]) -> dict[str, dict[str, str]]:
    return {
        m.obj["metadata"]["name"]: {str(k): str(v) for k, v in (m.obj["metadata"].get("labels") or {}).items()}
        for m in manifests
        if m.obj["kind"] == "Namespace"
    }


def applied_objects(manifests: list[Manifest]) -> list[dict]:
    return [m.obj for m in manifests if m.obj["kind"] in APPLIED_KINDS]


def secret_objects(spec: Spec, pki: RunPKI) -> list[dict]:
    """The spec's credentialName Secrets, holding what the test PKI made: the public CA that
    signed every host's certificate, a client certificate its mutual-TLS ports accept, or a CA that
    signed nothing (Istio reads `cacert` for a CA, `tls.crt`/`tls.key`/`ca.crt` for a client)."""
    out = []
    client = None
    for s in spec.secrets:
        if s.holds == "ca":
            data = {"cacert": pki.public_ca.cert_pem}
        elif s.holds == "untrusted-ca":
            data = {"cacert": pki.other_public_ca().cert_pem}
        else:
            if client is None:
                client = pki.public_ca.issue_client(
                    "spec-client", "egress-harness-client", dns_names=["client.egress-harness"]
                )
            data = {"tls.crt": client.cert_pem, "tls.key": client.key_pem, "ca.crt": pki.public_ca.cert_pem}
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": s.name, "namespace": s.namespace},
                "type": "Opaque",
                "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
            }
        )
    return out


def apply_spec(mesh, spec: Spec, manifests: list[Manifest]) -> list[list[dict]]:
    """The spec on `mesh`: Namespace labels, then its Secrets (before the config naming them), then
    its manifests, each apply returning once every proxy runs them. Returns what to delete, in order."""
    for namespace, labels in namespace_labels(manifests).items():
        mesh.label_namespace(namespace, labels)
    applied = [objs for objs in (secret_objects(spec, mesh.pki), applied_objects(manifests)) if objs]
    for objs in applied:
        mesh.apply(objs)
    return applied[::-1]
