"""Scenario manifests: Jinja2 templates in fixtures/, rendered once per scenario × mode × values.

A scenario stage names the templates it applies (paths relative to fixtures/) and the values
that differ between stages; the backend adds how the gateway trusts the stand-in. Every backend
applies the same rendering; the kind backend also validates it offline with istioctl.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import jinja2
import yaml

from harness.errors import HarnessError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MODES = ("istio-mutual", "plaintext")
VIA_HEADER = "x-egress-harness-via"


@dataclass(frozen=True)
class Stage:
    name: str
    templates: tuple[str, ...]
    values: tuple[tuple[str, object], ...] = ()


def _gateway_port(mode: str) -> int:
    return 443 if mode == "istio-mutual" else 80


_GATEWAY_ROUTE = ("http-gateway/gateway.yaml.j2", "http-gateway/destinationrule.yaml.j2",
                  "http-gateway/virtualservice.yaml.j2")

STAGES: dict[str, Stage] = {s.name: s for s in [
    # Seed §1: HTTP through the egress gateway.
    Stage("http/serviceentry", ("http-gateway/serviceentry.yaml.j2",)),
    Stage("http/gateway", ("http-gateway/serviceentry.yaml.j2", *_GATEWAY_ROUTE), (("upstream_port", 80),)),
    # Seed §2: TLS origination at the gateway (and the negative and mutual variants).
    Stage("origination/serviceentry", ("tls-origination/serviceentry.yaml.j2",)),
    Stage("origination/simple", ("tls-origination/serviceentry.yaml.j2", *_GATEWAY_ROUTE,
                                 "tls-origination/destinationrule.yaml.j2"),
          (("upstream_port", 443), ("origination", "simple"))),
    Stage("origination/wrong-ca", ("tls-origination/serviceentry.yaml.j2", *_GATEWAY_ROUTE,
                                   "tls-origination/destinationrule.yaml.j2"),
          (("upstream_port", 443), ("origination", "wrong-ca"))),
    Stage("origination/no-origination", ("tls-origination/serviceentry.yaml.j2", *_GATEWAY_ROUTE),
          (("upstream_port", 443),)),
    Stage("origination/mutual", ("tls-origination/serviceentry.yaml.j2", *_GATEWAY_ROUTE,
                                 "tls-origination/destinationrule.yaml.j2"),
          (("upstream_port", 8443), ("origination", "mutual"))),
    Stage("origination/mutual-without-client-cert", ("tls-origination/serviceentry.yaml.j2", *_GATEWAY_ROUTE,
                                                     "tls-origination/destinationrule.yaml.j2"),
          (("upstream_port", 8443), ("origination", "simple"))),
    # Seed §3: HTTPS passthrough by SNI.
    Stage("passthrough/serviceentry", ("https-passthrough/serviceentry.yaml.j2",)),
    Stage("passthrough/gateway", ("https-passthrough/serviceentry.yaml.j2", "https-passthrough/gateway.yaml.j2",
                                  "http-gateway/destinationrule.yaml.j2", "https-passthrough/virtualservice.yaml.j2"),
          (("gateway_port_override", 443),)),
    # Seed §4: the NetworkPolicy, and the gateway's DestinationRule for test-egress's sidecar
    # (today a DestinationRule applies to proxies of its own namespace, the service's or the root
    # namespace only; the seed's Istio 1.0 applied it mesh-wide).
    Stage("network-policy", ("network-policy/networkpolicy.yaml.j2",)),
    Stage("network-policy/destinationrule", ("http-gateway/destinationrule.yaml.j2",),
          (("namespace", "test-egress"), ("gateway_port_override", 443))),
]}


@functools.lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(FIXTURES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render(stage: str, *, mode: str, trust: dict | None = None, **extra: object) -> list[dict]:
    """The manifests of `stage` in `mode` as a list of objects (a new list each call)."""
    if mode not in MODES:
        raise HarnessError(f"unknown mTLS mode {mode!r}: use one of {', '.join(MODES)}")
    if stage not in STAGES:
        raise HarnessError(f"unknown scenario stage {stage!r}: known stages are {', '.join(STAGES)}")
    key = json.dumps({"stage": stage, "mode": mode, "trust": trust or {}, "extra": extra}, sort_keys=True, default=str)
    return json.loads(_render_cached(key))


@functools.lru_cache(maxsize=256)
def _render_cached(key: str) -> str:
    spec = json.loads(key)
    stage = STAGES[spec["stage"]]
    mode = spec["mode"]
    trust = spec["trust"]
    values: dict[str, object] = {
        "mode": mode, "namespace": "default", "via_header": VIA_HEADER,
        "gateway_port": _gateway_port(mode), "upstream_port": 80, "origination": "simple",
        "trust": trust.get("trust", {}), "wrong_trust": trust.get("wrong_trust", {}), "client": trust.get("client", {}),
    }
    values.update(dict(stage.values))
    if "gateway_port_override" in values:
        values["gateway_port"] = values.pop("gateway_port_override")
    values.update(spec["extra"])
    objs: list[dict] = []
    for template in stage.templates:
        try:
            text = _env().get_template(template).render(**values)
        except jinja2.UndefinedError as exc:
            raise HarnessError(f"fixtures/{template}: {exc} (the backend must provide it)") from None
        try:
            docs = [d for d in yaml.safe_load_all(text) if d]
        except yaml.YAMLError as exc:
            raise HarnessError(f"fixtures/{template} renders to invalid YAML: {str(exc).splitlines()[0]}") from None
        objs.extend(docs)
    return json.dumps(objs)


PLACEHOLDER_TRUST = {
    "trust": {"ca_certificates": "/placeholder/ca.pem"},
    "wrong_trust": {"ca_certificates": "/placeholder/other-ca.pem"},
    "client": {"client_certificate": "/placeholder/client.pem", "private_key": "/placeholder/client.key"},
}


def check_fixtures() -> int:
    """Render every stage in every mode once, so a broken fixture stops the run with one line
    before any mesh is started. Returns the number of objects rendered."""
    count = 0
    for stage in STAGES:
        for mode in MODES:
            objs = render(stage, mode=mode, trust=PLACEHOLDER_TRUST)
            for obj in objs:
                if not isinstance(obj, dict) or not obj.get("kind") or not (obj.get("metadata") or {}).get("name"):
                    raise HarnessError(f"stage {stage} ({mode}) renders an object without kind or metadata.name: "
                                       f"fix its template in fixtures/")
            count += len(objs)
    return count


def to_yaml(objs: list[dict]) -> str:
    return yaml.safe_dump_all(objs, sort_keys=False)


def load_manifest_file(path: Path) -> list[dict]:
    """User-supplied YAML (a file of one or more documents), with a clear error when malformed."""
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    except OSError as exc:
        raise HarnessError(f"cannot read manifest {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise HarnessError(f"malformed manifest {path}{where}: {getattr(exc, 'problem', exc)} (fix the YAML)") from None
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "metadata" not in d:
            raise HarnessError(f"manifest {path}: every document needs kind and metadata")
    return docs
