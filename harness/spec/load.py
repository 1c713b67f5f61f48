"""Read an egress spec and check it whole before anything starts: every refusal is one line naming
the file, the line and the fix (SpecError).

The checks here need no mesh: unknown keys, values of the wrong kind, an expectation naming a host
or a source the spec does not declare, a manifest path that does not exist or a document that is
no Kubernetes object. What only Istio can say (a manifest `istioctl validate` rejects) is checked
by harness/spec/manifests.py, with the same file:line form.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from harness.errors import HarnessError
from harness.spec.model import (
    DEFAULT_GATEWAY,
    PROTOCOLS,
    REFUSALS,
    SECRET_HOLDS,
    TLS_BY,
    VIA,
    Expectation,
    Host,
    SecretSpec,
    Source,
    Spec,
    Target,
    Where,
)
from harness.stand_in import FIXED_LISTENERS, UPSTREAM_PORTS

TOP_KEYS = ("hosts", "manifests", "secrets", "sources", "gateways", "expect")
HOST_KEYS = ("ports", "names", "certificate", "client_certificate")
SOURCE_KEYS = ("service_account", "labels", "sidecar")
EXPECT_KEYS = (
    "name",
    "from",
    "to",
    "status",
    "via",
    "gateway",
    "sni",
    "tls_by",
    "hop_mtls",
    "client_certificate",
    "counters",
    "refused",
)
_DNS_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_DNS_NAME = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})+$")
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class SpecError(HarnessError):
    """One line: `file:line: what is wrong (the fix)`."""


class _Doc:
    """The parsed YAML and the line of every value in it, by path (keys and list indices)."""

    def __init__(self, file: Path, text: str):
        self.file = file
        self.lines: dict[tuple, int] = {}
        try:
            node = yaml.compose(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark else 1
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise SpecError(f"{file}:{line}: not YAML: {problem}") from None
        if node is None:
            raise SpecError(f"{file}:1: the spec is empty (start with `hosts:`; see README, 'Test your own egress')")
        self.root = self._plain(node, ())

    def _plain(self, node: yaml.Node, path: tuple) -> Any:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict = {}
            for key_node, value_node in node.value:
                key = yaml.safe_load(yaml.serialize(key_node))
                if key in out:
                    raise SpecError(f"{self.file}:{key_node.start_mark.line + 1}: {key!r} is given twice")
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                out[key] = self._plain(value_node, (*path, key))
                self.lines[(*path, key)] = key_node.start_mark.line + 1
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._plain(item, (*path, i)) for i, item in enumerate(node.value)]
        return yaml.safe_load(yaml.serialize(node))

    def where(self, path: tuple) -> Where:
        while path and path not in self.lines:
            path = path[:-1]
        return Where(self.file, self.lines.get(path, 1))

    def fail(self, path: tuple, message: str) -> SpecError:
        return SpecError(f"{self.where(path)}: {message}")


def load_spec(path: str | Path) -> Spec:
    """The spec at `path`, checked whole; SpecError (one line) otherwise."""
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise SpecError(
            f"{file}: cannot read the egress spec: {exc.strerror or exc} (check --egress-spec / SPEC=)"
        ) from None
    doc = _Doc(file, text)
    root = doc.root
    if not isinstance(root, dict):
        raise doc.fail((), "the spec is a mapping with keys " + ", ".join(TOP_KEYS))
    _known_keys(doc, (), root, TOP_KEYS)
    for key in ("hosts", "sources", "expect"):
        if key not in root:
            raise doc.fail((), f"the spec has no `{key}:` (see README, 'Test your own egress')")
    hosts = _hosts(doc, root["hosts"])
    sources = _sources(doc, root["sources"])
    gateways = _gateways(doc, root.get("gateways", [DEFAULT_GATEWAY]))
    spec = Spec(
        file=file,
        hosts=hosts,
        manifests=_manifests(doc, root.get("manifests", [])),
        secrets=_secrets(doc, root.get("secrets", {})),
        sources=sources,
        gateways=gateways,
    )
    spec.expectations.extend(_expectations(doc, root["expect"], spec))
    return spec


# ---------------------------------------------------------------------------------- parts


def _known_keys(doc: _Doc, path: tuple, mapping: dict, allowed: tuple[str, ...]) -> None:
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean `{close[0]}`?" if close else "allowed: " + ", ".join(allowed)
            raise doc.fail((*path, key), f"unknown key `{key}` ({hint})")


def _mapping(doc: _Doc, path: tuple, value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise doc.fail(path, f"{what} is a mapping (`key: value` lines)")
    return value


def _list(doc: _Doc, path: tuple, value: Any, what: str) -> list:
    if not isinstance(value, list):
        raise doc.fail(path, f"{what} is a list (`- item` lines, or [a, b])")
    return value


def _dns_name(doc: _Doc, path: tuple, name: Any, *, wildcard: bool) -> str:
    text = str(name)
    bare = text[2:] if wildcard and text.startswith("*.") else text
    if not isinstance(name, str) or not _DNS_NAME.match(bare):
        what = "a DNS name such as api.example.com" + (" or a wildcard *.example.net" if wildcard else "")
        raise doc.fail(path, f"{text!r} is not {what}")
    return text


def _hosts(doc: _Doc, value: Any) -> list[Host]:
    hosts = []
    used: dict[int, tuple[str, str]] = {}  # stand-in port -> (protocol, host) across hosts
    for name, body in _mapping(doc, ("hosts",), value, "`hosts:`").items():
        path = ("hosts", name)
        name = _dns_name(doc, path, name, wildcard=True)
        body = _mapping(doc, path, body, f"host {name}")
        _known_keys(doc, path, body, HOST_KEYS)
        ports: dict[int, str] = {}
        for port, proto in _mapping(
            doc, (*path, "ports"), body.get("ports"), f"{name}'s `ports:` (e.g. {{443: HTTPS}})"
        ).items():
            if not isinstance(port, int) or not 0 < port < 65536 or port == UPSTREAM_PORTS["control"]:
                raise doc.fail(
                    (*path, "ports", port),
                    f"port {port!r} of {name} is not a port number ({UPSTREAM_PORTS['control']} is the stand-in's control port)",
                )
            if proto not in PROTOCOLS:
                raise doc.fail(
                    (*path, "ports", port), f"protocol {proto!r} of {name}:{port}: one of {', '.join(PROTOCOLS)}"
                )
            ports[port] = proto
        client_cert = body.get("client_certificate", "none")
        if client_cert not in ("required", "none"):
            raise doc.fail((*path, "client_certificate"), "client_certificate is `required` or `none`")
        if name.startswith("*."):
            names = _list(
                doc, (*path, "names"), body.get("names"), f"wildcard {name}'s `names:` (the concrete names to try)"
            )
            names = [_dns_name(doc, (*path, "names", i), n, wildcard=False) for i, n in enumerate(names)]
            if not names:
                raise doc.fail((*path, "names"), f"wildcard {name} needs at least one concrete name to try")
        else:
            if "names" in body:
                raise doc.fail((*path, "names"), f"`names:` is for wildcard hosts; {name} is its own name")
            names = [name]
        certificate = body.get("certificate", [name])
        certificate = [
            _dns_name(doc, (*path, "certificate", i), n, wildcard=True)
            for i, n in enumerate(_list(doc, (*path, "certificate"), certificate, "`certificate:` (its SANs)"))
        ]
        host = Host(name, ports, tuple(names), tuple(certificate), client_cert == "required", doc.where(path))
        for port in ports:
            proto = host.stand_in_protocol(port)
            fixed = FIXED_LISTENERS.get(port)  # a fixed listener serves only its own protocol
            other = used.get(port)
            if fixed and fixed != proto:
                owner = f"the stand-in's fixed {fixed} port"
            elif other and other[0] != proto:
                owner = f"{other[1]}'s ({other[0]})"
            else:
                used[port] = (proto, name)
                continue
            if owner:
                raise doc.fail(
                    (*path, "ports", port),
                    f"{name}:{port} would be {proto} but port {port} is {owner}: the stand-in serves one protocol per port; choose another port",
                )
        hosts.append(host)
    if not hosts:
        raise doc.fail(("hosts",), "declare at least one host")
    return hosts


def _sources(doc: _Doc, value: Any) -> dict[str, Source]:
    sources = {}
    for key, body in _mapping(doc, ("sources",), value, "`sources:`").items():
        path = ("sources", key)
        namespace, _, name = str(key).partition("/")
        if not (_K8S_NAME.match(namespace) and _K8S_NAME.match(name)):
            raise doc.fail(path, f"source {key!r} is `namespace/name` (lowercase, digits, -)")
        if namespace == "istio-system":
            raise doc.fail(path, "a source in istio-system would sit beside the gateway: use your own namespace")
        body = _mapping(doc, path, body or {}, f"source {key}")
        _known_keys(doc, path, body, SOURCE_KEYS)
        labels = _mapping(doc, (*path, "labels"), body.get("labels", {"app": name}), "`labels:`")
        sidecar = body.get("sidecar", True)
        if not isinstance(sidecar, bool):
            raise doc.fail((*path, "sidecar"), "sidecar is true or false")
        sa = str(body.get("service_account", name))
        if not _K8S_NAME.match(sa):
            raise doc.fail((*path, "service_account"), f"service account {sa!r} is no Kubernetes name")
        sources[key] = Source(
            namespace, name, sa, {str(k): str(v) for k, v in labels.items()}, sidecar, doc.where(path)
        )
    if not sources:
        raise doc.fail(("sources",), "declare at least one source (namespace/name: {sidecar: true})")
    return sources


def _gateways(doc: _Doc, value: Any) -> list[str]:
    gateways = []
    for i, g in enumerate(_list(doc, ("gateways",), value, "`gateways:`")):
        if not isinstance(g, str) or g.count("/") != 1:
            raise doc.fail(("gateways", i), f"gateway {g!r} is `namespace/name` of its Deployment")
        gateways.append(g)
    return gateways


def _manifests(doc: _Doc, value: Any) -> list[Path]:
    files: list[Path] = []
    for i, entry in enumerate(_list(doc, ("manifests",), value, "`manifests:`")):
        path = (doc.file.parent / str(entry)).resolve()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
            if not found:
                raise doc.fail(("manifests", i), f"{entry}: the folder holds no .yaml or .yml file")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise doc.fail(
                ("manifests", i), f"{entry}: no such file or folder (paths are relative to the spec's folder)"
            )
    return files


def _secrets(doc: _Doc, value: Any) -> list[SecretSpec]:
    out = []
    for key, holds in _mapping(doc, ("secrets",), value, "`secrets:`").items():
        path = ("secrets", key)
        namespace, _, name = str(key).partition("/")
        if not (_K8S_NAME.match(namespace) and _K8S_NAME.match(name)):
            raise doc.fail(path, f"secret {key!r} is `namespace/name`")
        if holds not in SECRET_HOLDS:
            raise doc.fail(
                path, f"secret {key} holds one of: " + "; ".join(f"{k} ({v})" for k, v in SECRET_HOLDS.items())
            )
        out.append(SecretSpec(namespace, name, holds, doc.where(path)))
    return out


def _expectations(doc: _Doc, value: Any, spec: Spec) -> list[Expectation]:
    out: list[Expectation] = []
    for i, body in enumerate(_list(doc, ("expect",), value, "`expect:`")):
        path = ("expect", i)
        body = _mapping(doc, path, body, "an expectation")
        _known_keys(doc, path, body, EXPECT_KEYS)
        for required in ("from", "to"):
            if required not in body:
                raise doc.fail(path, f"the expectation has no `{required}:`")
        source = str(body["from"])
        if source not in spec.sources:
            raise doc.fail(
                (*path, "from"), f"source {source!r} is not declared under `sources:` ({', '.join(spec.sources)})"
            )
        try:
            target = Target.parse(str(body["to"]))
        except ValueError as exc:
            raise doc.fail((*path, "to"), str(exc)) from None
        host = spec.host_for(target.host)
        if host is None:
            raise doc.fail(
                (*path, "to"),
                f"host {target.host} is not declared under `hosts:` (the stand-in serves only declared hosts)",
            )
        if target.host not in host.names:
            raise doc.fail(
                (*path, "to"), f"{target.host} is not one of the names {host.name} resolves: add it to its `names:`"
            )
        if target.port not in host.ports:
            raise doc.fail((*path, "to"), f"{host.name} has no port {target.port} (its ports: {sorted(host.ports)})")
        scheme_ok = {"http": ("HTTP",), "https": ("HTTPS", "TLS"), "tcp": ("TCP", "TLS", "HTTPS", "HTTP")}
        if host.ports[target.port] not in scheme_ok[target.scheme]:
            raise doc.fail(
                (*path, "to"), f"{target.scheme}:// to {host.name}:{target.port}, a {host.ports[target.port]} port"
            )

        refused = _pick(doc, path, body, "refused", tuple(REFUSALS))
        expectation = Expectation(
            source=source,
            target=target,
            host=host,
            where=doc.where(path),
            name=_pick(doc, path, body, "name", kind=str),
            status=_pick(doc, path, body, "status", kind=int, check=lambda s: 100 <= s < 600),
            via=_pick(doc, path, body, "via", VIA),
            gateway=_pick(doc, path, body, "gateway", tuple(spec.gateways)) or spec.gateways[0]
            if spec.gateways
            else DEFAULT_GATEWAY,
            sni=_optional_name(doc, (*path, "sni"), body.get("sni")),
            tls_by=_pick(doc, path, body, "tls_by", TLS_BY),
            hop_mtls=_pick(doc, path, body, "hop_mtls", kind=bool),
            client_certificate=_pick(doc, path, body, "client_certificate", kind=bool),
            counters=_pick(doc, path, body, "counters", ("grow",)) == "grow",
            refused=refused,
        )
        _consistent(doc, path, expectation, body, spec)
        if expectation.id in {e.id for e in out}:
            raise doc.fail(path, f"two expectations are both {expectation.id!r}: give one a `name:`")
        out.append(expectation)
    if not out:
        raise doc.fail(("expect",), "the spec expects nothing: add `- from: ns/name` `to: https://host/` items")
    return out


def _pick(
    doc: _Doc,
    path: tuple,
    body: dict,
    key: str,
    allowed: tuple | None = None,
    kind: type | None = None,
    check: Callable[[Any], bool] | None = None,
) -> Any:
    """body[key] checked (one of `allowed`, of type `kind`, passing `check`), or None if absent."""
    if key not in body:
        return None
    v = body[key]
    if allowed is not None and v not in allowed:
        raise doc.fail((*path, key), f"{key} is one of: {', '.join(map(str, allowed))}")
    if kind is not None and not isinstance(v, kind):
        raise doc.fail((*path, key), f"{key} is {'true or false' if kind is bool else kind.__name__}")
    if check is not None and not check(v):
        raise doc.fail((*path, key), f"{key} {v!r} is not valid here")
    return v


def _optional_name(doc: _Doc, path: tuple, value: Any) -> str | None:
    return None if value is None else _dns_name(doc, path, value, wildcard=False)


def _consistent(doc: _Doc, path: tuple, e: Expectation, body: dict, spec: Spec) -> None:
    """Combinations that cannot hold, refused before the mesh starts."""
    if e.refused:
        extra = [k for k in ("via", "sni", "tls_by", "hop_mtls", "client_certificate", "counters") if k in body]
        if extra:
            raise doc.fail((*path, extra[0]), f"a refused exchange reaches no host: drop `{extra[0]}:`")
        if e.refused == "authorization-policy" and e.target.scheme == "tcp":
            raise doc.fail((*path, "refused"), "a 403 needs HTTP at the gateway; a TCP refusal is a reset")
    if e.via == "direct" and (e.hop_mtls or e.tls_by == "gateway"):
        key = "hop_mtls" if e.hop_mtls else "tls_by"
        raise doc.fail((*path, key), f"`{key}:` describes the gateway, but the exchange is `via: direct`")
    if e.tls_by == "app" and e.target.scheme == "http":
        raise doc.fail((*path, "tls_by"), "an http:// URL: the application sends no TLS (tls_by: sidecar or gateway)")
    if e.tls_by in ("sidecar", "gateway") and e.target.scheme == "https":
        raise doc.fail((*path, "tls_by"), "an https:// URL: the application opens the TLS itself (tls_by: app)")
    source = spec.sources[e.source]
    if (e.hop_mtls or e.refused == "registry-only") and not source.sidecar:
        raise doc.fail((*path, "from"), f"{e.source} has no sidecar (sidecar: false), so it has no sidecar to check")
