"""A semantic diff of Envoy config dumps: what changed in meaning, on the egress paths.

Istio has no semantic `proxy-config diff` (asked for in istio/istio #6542, #14127, #28825); a
textual diff of two config dumps is thousands of lines of version_info, timestamps and reordered
lists. This module reads two `/config_dump` JSON documents (Envoy's admin API, or `istioctl
proxy-config all -o json`, or the `config_dump.json` files the harness saves) and reports only:

- resources that the egress paths use: clusters, routes and secrets that mention one of the
  watched hosts (edition.cnn.com and the egress gateway by default), the listeners that mention
  them or serve such a route, and within those listeners only the filter chains that do; and the
  SDS secrets (certificates, trust roots) those clusters and listeners refer to by name;
- after normalising away what carries no meaning: version_info, last_updated, nonces and other
  bookkeeping keys; the harness's generated convergence markers (`sync-<n>.egress-harness.invalid`); `@type` URLs folded to the message name and `typed_config` wrappers lifted into
  their parent (so a path reads `transport_socket.sni`, not `transport_socket.typed_config.sni`);
  inline certificate bytes folded (they rotate); lists whose order Envoy ignores (filter chains,
  virtual hosts, domains, SNI names, SANs) sorted; lists of named items whose order matters (HTTP
  filters, network filters, routes) keyed by name with their order as one `_order` entry, so an
  insertion is one line, not a shift of every index after it.

One line per changed leaf, e.g.
  `istio-system.istio-egressgateway cluster outbound|443||edition.cnn.com: transport_socket.sni edition.cnn.com → (unset)`.

Stats: the counter names the suites read (stats.py) for the watched clusters, present in one
`/stats` dump and not the other: the ";" suffix of istio/istio#51861 is that kind of change.

CLI: `python -m harness.config_diff A B` with A and B two config_dump JSON files, or two folders
laid out as the harness writes them (`<namespace>.<pod>/config_dump.json` and `stats.json`, as in
`artifacts/evidence/<test>/mesh/` and `artifacts/upgrade/snapshots/<phase>/`). Exit status 0 when
nothing changed, 1 when something did, 2 on bad input.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.console import description
from harness.errors import HarnessError
from harness.sync import MARKER_DOMAIN

DEFAULT_HOSTS = ("edition.cnn.com", "istio-egressgateway")

# Bookkeeping that changes with every push or restart and says nothing about behaviour.
VOLATILE_KEYS = frozenset(
    {
        "version_info",
        "last_updated",
        "nonce",
        "response_nonce",
        "client_status",
        "last_update_attempt",
    }
)
# Lists Envoy treats as sets (matching is by specificity or membership, not position).
UNORDERED_LISTS = frozenset(
    {
        "filter_chains",
        "virtual_hosts",
        "domains",
        "server_names",
        "match_subject_alt_names",
        "subject_alt_names",
        "match_typed_subject_alt_names",
        "prefix_ranges",
        "source_prefix_ranges",
        "application_protocols",
        "tls_certificate_sds_secret_configs",
        "source_ports",
        "verify_subject_alt_name",
        "request_headers_to_add",
        "response_headers_to_add",
        "request_headers_to_remove",
        "response_headers_to_remove",
    }
)
# Lists of named items whose order matters (first match / filter order): keyed by name plus `_order`.
ORDERED_NAMED_LISTS = frozenset({"http_filters", "filters", "listener_filters", "routes"})
# Inline bytes that are certificates or keys: they rotate, so only their presence is meaning.
_INLINE_SECRET_KEYS = frozenset({"inline_bytes", "inline_string"})

KINDS = ("listener", "route", "cluster", "secret")
# Counters the suites read (harness/stats.py, harness/checks/): their presence per watched cluster.
SUITE_STAT_LEAVES = (
    "upstream_rq_total",
    "upstream_cx_total",
    "ssl.handshake",
    "ssl.fail_verify_error",
    "ssl.fail_verify_san",
)


@dataclass(frozen=True)
class Change:
    proxy: str  # "istio-system.istio-egressgateway", "" for a lone pair of dumps
    kind: str  # listener, route, cluster, secret, stat
    name: str  # the resource's name
    path: str  # dotted path inside the resource; "" for the resource itself
    before: Any  # _UNSET when absent
    after: Any

    def line(self) -> str:
        where = f"{self.proxy} " if self.proxy else ""
        path = f"{self.path} " if self.path else ""
        return f"{where}{self.kind} {self.name}: {path}{_show(self.before)} → {_show(self.after)}"

    def as_json(self) -> dict:
        return {
            "proxy": self.proxy,
            "kind": self.kind,
            "name": self.name,
            "path": self.path,
            "before": None if self.before is _UNSET else self.before,
            "after": None if self.after is _UNSET else self.after,
            "line": self.line(),
        }


class _Unset:
    def __repr__(self) -> str:
        return "(unset)"


_UNSET = _Unset()


def _show(value: Any) -> str:
    if value is _UNSET:
        return "(unset)"
    if isinstance(value, str):
        return value
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= 160 else text[:157] + "…"


# ---------------------------------------------------------------- reading a dump


def resources(dump: dict) -> dict[str, dict[str, dict]]:
    """kind → name → resource, for listeners, routes, clusters and secrets in a /config_dump.
    Active state only (warming and draining listeners are transitions, not config)."""
    out: dict[str, dict[str, dict]] = {k: {} for k in KINDS}
    for config in dump.get("configs", []) if isinstance(dump, dict) else []:
        kind = str(config.get("@type", "")).rsplit(".", 1)[-1]
        if kind == "ListenersConfigDump":
            for e in config.get("static_listeners", []):
                _put(out["listener"], e.get("listener"))
            for e in config.get("dynamic_listeners", []):
                state = e.get("active_state") or e.get("warming_state") or {}
                _put(out["listener"], state.get("listener"), error=e.get("error_state"))
        elif kind == "ClustersConfigDump":
            for where in ("static_clusters", "dynamic_active_clusters", "dynamic_warming_clusters"):
                for e in config.get(where, []):
                    _put(out["cluster"], e.get("cluster"), error=e.get("error_state"))
        elif kind == "RoutesConfigDump":
            for where in ("static_route_configs", "dynamic_route_configs"):
                for e in config.get(where, []):
                    _put(out["route"], e.get("route_config"), error=e.get("error_state"))
        elif kind == "SecretsConfigDump":
            for where in ("static_secrets", "dynamic_active_secrets", "dynamic_warming_secrets"):
                for e in config.get(where, []):
                    secret = e.get("secret") or {}
                    if e.get("name") and "name" not in secret:
                        secret = {"name": e["name"], **secret}
                    _put(out["secret"], secret)
    return out


def _put(table: dict[str, dict], resource: dict | None, error: dict | None = None) -> None:
    if not isinstance(resource, dict) or not resource.get("name"):
        return
    resource = dict(resource)
    if error:
        # A NACKed resource is meaning: keep Envoy's message, not its timestamp.
        resource["error_state"] = {"details": error.get("details", "")}
    table[resource["name"]] = resource


# ---------------------------------------------------------------- normalising


def normalise(value: Any, key: str = "") -> Any:
    """The meaning of a config value: see the module docstring for each rule."""
    if isinstance(value, dict):
        value = _lift_typed_config(value)
        out = {}
        for k, v in value.items():
            if k in VOLATILE_KEYS:
                continue
            if k == "@type" and isinstance(v, str):
                out[k] = v.rsplit("/", 1)[-1].rsplit(".", 1)[-1]
            elif k in _INLINE_SECRET_KEYS and isinstance(v, str) and len(v) > 64:
                out[k] = "<inline data>"
            else:
                out[k] = normalise(v, k)
        return out
    if isinstance(value, list):
        items = [normalise(v, key) for v in value]
        if key in ORDERED_NAMED_LISTS and items and all(isinstance(i, dict) for i in items):
            return _keyed(items, ordered=True)
        if key in UNORDERED_LISTS:
            if items and all(isinstance(i, dict) for i in items):
                return _keyed(items, ordered=False)
            return sorted(items, key=_canon)
        return items
    if isinstance(value, str) and value.startswith("type.googleapis.com/"):
        return value.rsplit("/", 1)[-1].rsplit(".", 1)[-1]
    return value


def _lift_typed_config(d: dict) -> dict:
    """{"name": n, "typed_config": {"@type": T, ...fields}} → {"name": n, "@type": T, ...fields}."""
    tc = d.get("typed_config")
    if not isinstance(tc, dict):
        return d
    lifted = {k: v for k, v in d.items() if k != "typed_config"}
    for k, v in tc.items():
        lifted.setdefault(k, v)
    return lifted


def _keyed(items: list[dict], *, ordered: bool) -> dict:
    """A list of dicts as a dict keyed by each item's name (or its match, or its content)."""
    keys = [_item_key(i) for i in items]
    if len(set(keys)) != len(keys):  # duplicate names: fall back to content
        keys = [_canon(i)[:80] for i in items]
    out: dict[str, Any] = {k: i for k, i in zip(keys, items, strict=False)}
    if ordered and len(items) > 1:
        out["_order"] = keys
    return dict(sorted(out.items()))


def _item_key(item: dict) -> str:
    if isinstance(item.get("name"), str) and item["name"]:
        return item["name"]
    if isinstance(item.get("header"), dict) and "key" in item["header"]:  # headers_to_add
        return str(item["header"]["key"])
    for field in ("filter_chain_match", "match"):
        if field in item:
            return f"{field}={_canon(item[field])}"
    return _canon(item)[:80]


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


# ---------------------------------------------------------------- restricting to the egress paths


def _mentions(value: Any, needles: Iterable[str]) -> bool:
    text = _canon(value)
    return any(n in text for n in needles)


def egress_view(dump: dict, hosts: Iterable[str] = DEFAULT_HOSTS) -> dict[str, dict[str, Any]]:
    """kind → name → normalised resource, only what the egress paths to `hosts` use."""
    hosts = tuple(hosts)
    res = resources(dump)
    view: dict[str, dict[str, Any]] = {k: {} for k in KINDS}
    for kind in ("cluster", "route", "secret"):
        for name, r in res[kind].items():
            if _mentions(r, hosts):
                view[kind][name] = normalise(r)
    # A listener matters when it names a host or serves a route that does (RDS by name).
    route_refs = tuple(f'"route_config_name":"{name}"' for name in view["route"])
    needles = hosts + route_refs
    for name, listener in res["listener"].items():
        if not _mentions(listener, needles):
            continue
        listener = dict(listener)
        chains = listener.get("filter_chains")
        if isinstance(chains, list):
            listener["filter_chains"] = [c for c in chains if _mentions(c, needles)]
        default = listener.get("default_filter_chain")
        if default is not None and not _mentions(default, needles):
            listener.pop("default_filter_chain")
        view["listener"][name] = normalise(listener)
    # Secrets (SDS) that the chosen clusters and listeners use: certificates and trust roots.
    used: set[str] = set()
    for kind in ("cluster", "listener"):
        for name in view[kind]:
            used |= sds_names(res[kind][name])
    for name in sorted(used & set(res["secret"])):
        view["secret"].setdefault(name, normalise(res["secret"][name]))
    return view


def sds_names(value: Any) -> set[str]:
    """Names of the SDS secrets a resource refers to (`*sds_secret_config(s)`)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if k.endswith("sds_secret_config") and isinstance(v, dict) and isinstance(v.get("name"), str):
                found.add(v["name"])
            elif k.endswith("sds_secret_configs") and isinstance(v, list):
                found |= {c["name"] for c in v if isinstance(c, dict) and isinstance(c.get("name"), str)}
            found |= sds_names(v)
    elif isinstance(value, list):
        for v in value:
            found |= sds_names(v)
    return found


def everything_view(dump: dict) -> dict[str, dict[str, Any]]:
    """kind → name → normalised resource, every resource (`--all`), less the harness's generated
    convergence markers (harness/sync.py: a new `sync-<n>` host after every change)."""
    view: dict[str, dict[str, Any]] = {}
    for kind, table in resources(dump).items():
        view[kind] = {}
        for name, r in table.items():
            if MARKER_DOMAIN in name:
                continue
            if isinstance(r.get("filter_chains"), list):
                r = {**r, "filter_chains": [c for c in r["filter_chains"] if not _mentions(c, (MARKER_DOMAIN,))]}
                if not r["filter_chains"] and _mentions(table[name], (MARKER_DOMAIN,)):
                    continue  # a listener that only carried markers
            view[kind][name] = normalise(r)
    return view


# ---------------------------------------------------------------- diffing


def diff_values(a: Any, b: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """(path, before, after) for each leaf that differs between two normalised values."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            sub = f"{path}.{k}" if path else str(k)
            if k not in a:
                out.append((sub, _UNSET, b[k]))
            elif k not in b:
                out.append((sub, a[k], _UNSET))
            else:
                out.extend(diff_values(a[k], b[k], sub))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        # Same length: what changed inside an element, by position (a length change is shown whole).
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            out.extend(diff_values(x, y, f"{path}[{i}]"))
        return out
    if a != b:
        return [(path, a, b)]
    return []


def diff_views(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]], proxy: str = "") -> list[Change]:
    changes = []
    for kind in KINDS:
        ra, rb = a.get(kind, {}), b.get(kind, {})
        for name in sorted(set(ra) | set(rb)):
            if name not in ra:
                changes.append(Change(proxy, kind, name, "", _UNSET, "(added)"))
            elif name not in rb:
                changes.append(Change(proxy, kind, name, "", "(present)", _UNSET))
            else:
                changes.extend(Change(proxy, kind, name, p, x, y) for p, x, y in diff_values(ra[name], rb[name]))
    return changes


def diff_dumps(
    a: dict, b: dict, *, proxy: str = "", hosts: Iterable[str] = DEFAULT_HOSTS, everything: bool = False
) -> list[Change]:
    if everything:
        return diff_views(everything_view(a), everything_view(b), proxy)
    return diff_views(egress_view(a, hosts), egress_view(b, hosts), proxy)


def suite_stat_names(stats: dict[str, Any] | Iterable[str], hosts: Iterable[str] = DEFAULT_HOSTS) -> set[str]:
    """The stat names the suites read, of clusters naming a watched host."""
    hosts = tuple(hosts)
    return {
        n
        for n in stats
        if n.startswith("cluster.")
        and any(h in n for h in hosts)
        and any(n.endswith("." + leaf) for leaf in SUITE_STAT_LEAVES)
    }


def diff_stats(
    a: dict[str, Any] | Iterable[str],
    b: dict[str, Any] | Iterable[str],
    *,
    proxy: str = "",
    hosts: Iterable[str] = DEFAULT_HOSTS,
) -> list[Change]:
    na, nb = suite_stat_names(a, hosts), suite_stat_names(b, hosts)
    return [Change(proxy, "stat", n, "", "(present)", _UNSET) for n in sorted(na - nb)] + [
        Change(proxy, "stat", n, "", _UNSET, "(present)") for n in sorted(nb - na)
    ]


# ---------------------------------------------------------------- folders of dumps


def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise HarnessError(
            f"cannot read {path}: {exc.strerror}; pass a config_dump JSON file or a folder of them"
        ) from None
    except ValueError as exc:
        raise HarnessError(
            f"{path} is not JSON ({exc}); save it with `curl localhost:15000/config_dump` "
            f"or `istioctl proxy-config all <pod> -o json`"
        ) from None


def proxy_dumps(folder: Path) -> dict[str, Path]:
    """proxy name → its config_dump.json in a folder laid out as the harness writes it."""
    return {p.parent.name: p for p in sorted(folder.glob("*/config_dump.json"))}


def diff_paths(a: Path, b: Path, *, hosts: Iterable[str] = DEFAULT_HOSTS, everything: bool = False) -> list[Change]:
    """Two files, or two folders of `<proxy>/config_dump.json` (+ `stats.json`), paired by proxy."""
    if a.is_file() and b.is_file():
        return diff_dumps(load_json(a), load_json(b), hosts=hosts, everything=everything)
    if not (a.is_dir() and b.is_dir()):
        raise HarnessError(f"compare two config_dump files or two folders of them, not {a} and {b}")
    da, db = proxy_dumps(a), proxy_dumps(b)
    if not da and not db:
        raise HarnessError(f"no <proxy>/config_dump.json under {a} or {b}")
    changes: list[Change] = []
    for proxy in sorted(set(da) | set(db)):
        if proxy not in da:
            changes.append(Change(proxy, "proxy", proxy, "", _UNSET, "(added)"))
            continue
        if proxy not in db:
            changes.append(Change(proxy, "proxy", proxy, "", "(present)", _UNSET))
            continue
        changes += diff_dumps(
            load_json(da[proxy]), load_json(db[proxy]), proxy=proxy, hosts=hosts, everything=everything
        )
        sa, sb = da[proxy].with_name("stats.json"), db[proxy].with_name("stats.json")
        if sa.exists() and sb.exists():
            changes += diff_stats(load_json(sa), load_json(sb), proxy=proxy, hosts=hosts)
    return changes


def fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.config_diff", description=description(__doc__))
    parser.add_argument("before", type=Path, help="config_dump JSON file, or folder of <proxy>/config_dump.json")
    parser.add_argument("after", type=Path)
    parser.add_argument(
        "--host",
        action="append",
        dest="hosts",
        help=f"watch this host (repeatable; default: {', '.join(DEFAULT_HOSTS)})",
    )
    parser.add_argument("--all", action="store_true", help="diff every listener, route, cluster and secret")
    parser.add_argument("--json", action="store_true", help="print the changes as JSON")
    args = parser.parse_args(argv)
    try:
        changes = diff_paths(args.before, args.after, hosts=tuple(args.hosts or DEFAULT_HOSTS), everything=args.all)
    except HarnessError as exc:
        print(f"egress-harness: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([c.as_json() for c in changes], indent=2, default=str))
    else:
        for c in changes:
            print(c.line())
        print(f"{len(changes)} change(s)", file=sys.stderr)
    return 1 if changes else 0


if __name__ == "__main__":
    sys.exit(main())
