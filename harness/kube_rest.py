"""The one apply/delete path of every backend: server-side apply over the API server's REST API.

What the suites apply (Istio config, NetworkPolicy, the convergence marker) goes to the API server
as `kubectl apply --server-side --force-conflicts --field-manager=egress-harness` would send it:
one PATCH per object (application/apply-patch+yaml, fieldValidation=Strict, force), and a DELETE
per object for delete. Why not a kubectl process: it cost 150-170 ms per apply on two cores (43 ms
of it process start and discovery), where the four PATCHes of a stage take ~40 ms; applies sit in
every scenario step and in the convergence figure of `make bench-mesh`. kubectl stays for what a
person would type and the plan prints (setup, `get`, `exec`, `logs`, `port-forward`).

The API server's refusal (schema, strict field validation, admission) comes back as one line with
its own message, as ManifestRejected. Resources are found by discovery (group/version → kind →
plural, namespaced), once per group/version.

Connection: an httpx client from a kubeconfig (the user's, kind's, or the local mesh's): the
cluster's CA, a client certificate, a bearer token or token file, or an exec credential plugin.
Certificate and key data embedded in the kubeconfig are handed to OpenSSL through memfd files
(`/proc/self/fd/N`): nothing is written to disk, so no key outlives the process, even after SIGKILL.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from harness.errors import HarnessError, HarnessFault, ManifestRejected
from harness.gateway_api import channel_hint

FIELD_MANAGER = "egress-harness"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
# What a person would type for the same requests (the dry-run plan prints it).
KUBECTL_APPLY_EQUIVALENT = (
    "apply",
    "--server-side",
    "--force-conflicts",
    f"--field-manager={FIELD_MANAGER}",
    "-f",
    "-",
)


class KubeconfigError(HarnessError):
    pass


# ------------------------------------------------------------------------------ kubeconfig → httpx
def _memfd(name: str, data: bytes) -> tuple[int, str]:
    """Data as a file OpenSSL can open by path, in memory only: (fd, /proc/self/fd/N)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, data)
    return fd, f"/proc/self/fd/{fd}"


def _data_or_file(entry: dict, key: str, base: Path) -> bytes | None:
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        path = Path(entry[key]).expanduser()
        return (path if path.is_absolute() else base / path).read_bytes()
    return None


def _exec_credential(spec: dict, where: str) -> dict:
    """Run an exec credential plugin (client.authentication.k8s.io) and return its status."""
    env = dict(os.environ)
    env.update({e["name"]: e["value"] for e in spec.get("env") or []})
    api_version = spec.get("apiVersion", "client.authentication.k8s.io/v1")
    env["KUBERNETES_EXEC_INFO"] = json.dumps(
        {"apiVersion": api_version, "kind": "ExecCredential", "spec": {"interactive": False}}
    )
    argv = [spec["command"], *(spec.get("args") or [])]
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KubeconfigError(f"{where}: the credential plugin {argv[0]} did not run: {exc}") from None
    if proc.returncode != 0:
        raise KubeconfigError(
            f"{where}: the credential plugin {argv[0]} failed (exit {proc.returncode}): "
            f"{(proc.stderr.strip().splitlines() or [''])[-1]}"
        )
    try:
        return json.loads(proc.stdout).get("status") or {}
    except ValueError:
        raise KubeconfigError(f"{where}: the credential plugin {argv[0]} printed no ExecCredential JSON") from None


class KubeconfigAuth(httpx.Auth):
    """A bearer token that is fetched again when it runs out: an exec plugin's token until its
    expirationTimestamp (EKS tokens last about 15 minutes, longer than a kind run's suites), a
    tokenFile re-read (projected tokens rotate). On a 401 the token is fetched once more and the
    request retried, as client-go does."""

    def __init__(
        self, fetch: Callable[[], tuple[str, float | None]], first: tuple[str, float | None] | None = None
    ):  # fetch() -> (token, expiry as a Unix time, or None)
        self._fetch = fetch
        self._token: str
        self._expires: float | None
        self._token, self._expires = first or fetch()

    def _header(self) -> str:
        if self._expires is not None and time.time() >= self._expires - 30:
            self._token, self._expires = self._fetch()
        return f"Bearer {self._token}"

    def auth_flow(self, request: httpx.Request):
        request.headers["Authorization"] = self._header()
        response = yield request
        if response.status_code == 401:
            self._token, self._expires = self._fetch()
            request.headers["Authorization"] = f"Bearer {self._token}"
            yield request


@dataclass
class KubeConnection:
    """What an httpx client needs to reach one API server as one user."""

    server: str
    verify: ssl.SSLContext | bool
    headers: dict[str, str]
    auth: httpx.Auth | None = None

    def client(self, timeout: float = 30.0) -> httpx.Client:
        # trust_env=False: the harness's environment (SSL_CERT_FILE, proxies) is not the cluster's;
        # a kubeconfig's proxy-url is refused in one line below.
        return httpx.Client(
            base_url=self.server,
            verify=self.verify,
            headers=self.headers,
            auth=self.auth,
            timeout=timeout,
            trust_env=False,
        )


def _expiry(stamp: str | None) -> float | None:
    if not stamp:
        return None
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def connection_from_kubeconfig(path: Path, context: str | None = None) -> KubeConnection:
    """The current (or named) context of a kubeconfig file, as kubectl reads it. Anything it
    cannot use is one KubeconfigError line naming the fix."""
    where = f"kubeconfig {path}"
    try:
        return _connection(path, context, where)
    except KubeconfigError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a missing file, bad base64, a partial credential
        raise KubeconfigError(f"{where}: {type(exc).__name__}: {exc}: fix the kubeconfig or pass another") from None


def _load(path: Path) -> dict:
    """The kubeconfig as a mapping with clusters; KubeconfigError saying what it is instead."""
    try:
        config = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise KubeconfigError(f"cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise KubeconfigError(f"is not YAML{line} ({getattr(exc, 'problem', None) or exc})") from None
    if not isinstance(config, dict) or "clusters" not in config:
        held = {str: "plain text", list: "a list", dict: "a mapping without clusters", type(None): "nothing"}
        raise KubeconfigError(f"is not a kubeconfig (it holds {held.get(type(config), type(config).__name__)})")
    return config


def kubeconfig_problem(path: Path) -> str | None:
    """What makes `path` no usable kubeconfig, read without contacting anything or running its
    credential plugins (the cluster backend checks this before anything else); None when its
    current context names a cluster with a server."""
    try:
        config = _load(path)
    except KubeconfigError as exc:
        return str(exc)
    current = config.get("current-context")
    if not current:
        return "has no current-context"
    contexts = {c.get("name"): c.get("context") or {} for c in config.get("contexts") or [] if isinstance(c, dict)}
    if current not in contexts:
        return f"names current-context {current!r}, which it does not define"
    clusters = {c.get("name"): c.get("cluster") or {} for c in config.get("clusters") or [] if isinstance(c, dict)}
    cluster = clusters.get(contexts[current].get("cluster"))
    if not cluster or not cluster.get("server"):
        return f"has no server for the cluster of context {current!r}"
    return None


def _connection(path: Path, context: str | None, where: str) -> KubeConnection:
    try:
        config = _load(path)
    except KubeconfigError as exc:
        raise KubeconfigError(f"{where} {exc}: fix it or pass another") from None
    base = path.parent
    name = context or config.get("current-context")

    def pick(section: str, wanted: str | None) -> dict:
        for item in config.get(section) or []:
            if item.get("name") == wanted:
                return item.get(section[:-1]) or {}
        raise KubeconfigError(f"{where} has no {section[:-1]} {wanted!r}: pass a kubeconfig whose context exists")

    ctx = pick("contexts", name)
    cluster, user = pick("clusters", ctx.get("cluster")), pick("users", ctx.get("user"))
    if "auth-provider" in user:
        raise KubeconfigError(
            f"{where}: user {ctx.get('user')!r} authenticates with an auth-provider, which the harness does not "
            "speak: use an exec credential plugin, a token or a client certificate"
        )
    if cluster.get("proxy-url"):
        raise KubeconfigError(
            f"{where}: cluster {ctx.get('cluster')!r} is reached through proxy-url, which the harness's API "
            "client does not use: give it a kubeconfig whose server it reaches directly"
        )
    headers: dict[str, str] = {}
    auth: httpx.Auth | None = None
    cert = _data_or_file(user, "client-certificate", base)
    key = _data_or_file(user, "client-key", base)
    if user.get("exec"):
        status = _exec_credential(user["exec"], where)
        if status.get("clientCertificateData"):
            cert, key = status["clientCertificateData"].encode(), status["clientKeyData"].encode()
        if status.get("token"):
            spec = user["exec"]

            def fetch_exec() -> tuple[str, float | None]:
                fresh = _exec_credential(spec, where)
                return fresh["token"], _expiry(fresh.get("expirationTimestamp"))

            auth = KubeconfigAuth(fetch_exec, (status["token"], _expiry(status.get("expirationTimestamp"))))
    elif user.get("tokenFile"):
        token_file = Path(user["tokenFile"]).expanduser()
        token_file = token_file if token_file.is_absolute() else base / token_file
        # Re-read every minute: projected tokens are rotated in place.
        auth = KubeconfigAuth(lambda: (token_file.read_text().strip(), time.time() + 60))
    elif user.get("token"):
        headers["Authorization"] = f"Bearer {user['token']}"
    elif user.get("username") and user.get("password"):
        basic = base64.b64encode(f"{user['username']}:{user['password']}".encode()).decode()
        headers["Authorization"] = f"Basic {basic}"

    verify: ssl.SSLContext | bool
    if cluster.get("insecure-skip-tls-verify"):
        verify = False
    else:
        ca = _data_or_file(cluster, "certificate-authority", base)
        # No CA in the kubeconfig: the system's, as kubectl does.
        verify = ssl.create_default_context(cadata=ca.decode() if ca else None)
    if cert and key:
        ctx_ssl = verify if isinstance(verify, ssl.SSLContext) else ssl.create_default_context()
        if verify is False:
            ctx_ssl.check_hostname = False
            ctx_ssl.verify_mode = ssl.CERT_NONE
        fds = []
        try:
            cert_fd, cert_path = _memfd("client-cert", cert)
            fds.append(cert_fd)
            key_fd, key_path = _memfd("client-key", key)
            fds.append(key_fd)
            ctx_ssl.load_cert_chain(cert_path, key_path)
        finally:
            for fd in fds:
                os.close(fd)
        verify = ctx_ssl
    if isinstance(verify, ssl.SSLContext) and cluster.get("tls-server-name"):
        # httpx has no per-connection server_hostname knob: the name must match the URL's host.
        raise KubeconfigError(f"{where}: tls-server-name is not supported: point server at a name in its certificate")
    server = cluster.get("server")
    if not server:
        raise KubeconfigError(f"{where}: cluster {ctx.get('cluster')!r} has no server")
    return KubeConnection(server.rstrip("/"), verify, headers, auth)


# ------------------------------------------------------------------------------ apply / delete
def _describe(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {where}{meta.get('name')}"


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip().replace("\n", " ")[:400]
    return str(body.get("message") or body).replace("\n", " ")[:600]


# Statuses that are the API server refusing the object itself; anything else (429 throttling, 5xx
# from etcd or a webhook's timeout) is the infrastructure's fault, not the manifest's.
_REFUSALS = {400, 404, 409, 422}
# An apply patch that does not fit the object's schema (strict field validation: an unknown field)
# comes back as a 500 with this message: a refusal of the manifest, not a server fault.
_SCHEMA_MISFIT = "failed to create typed patch object"


def _refused(resp: httpx.Response) -> bool:
    return resp.status_code in _REFUSALS or (resp.status_code == 500 and _SCHEMA_MISFIT in resp.text)


class KubeRest:
    """Server-side apply and delete of whole objects on one API server. `log` lists each request
    (the evidence of a failed test shows what was sent)."""

    def __init__(self, client: httpx.Client, field_manager: str = FIELD_MANAGER):
        self.client = client
        self.field_manager = field_manager
        self._resources: dict[str, dict[str, tuple[str, bool]]] = {}  # apiVersion → kind → (plural, namespaced)
        self.log: list[str] = []

    @classmethod
    def from_kubeconfig(cls, path: Path, context: str | None = None) -> KubeRest:
        return cls(connection_from_kubeconfig(path, context).client())

    def close(self) -> None:
        self.client.close()

    def _send(self, method: str, url: str, what: str, **kwargs) -> httpx.Response:
        """One request, retried once after a throttle (429) or a server error (5xx), honouring
        Retry-After; a connection failure or a second server error is a HarnessFault."""
        self.log.append(f"{method} {url}")
        resp = None
        for attempt in (1, 2):
            try:
                resp = self.client.request(method, url, **kwargs)
            except httpx.HTTPError as exc:
                raise HarnessFault(f"{what}: the API server at {self.client.base_url} did not answer: {exc}") from None
            if resp.status_code in (401, 403):
                raise HarnessFault(
                    f"{what}: the API server refused the harness's credentials ({resp.status_code}): {_message(resp)}"
                )
            if (resp.status_code != 429 and resp.status_code < 500) or _refused(resp):
                return resp
            if attempt == 1:
                retry_after = resp.headers.get("Retry-After", "1")
                time.sleep(min(float(retry_after) if retry_after.isdigit() else 1.0, 10.0))
        assert resp is not None
        raise HarnessFault(f"{what}: the API server answered {resp.status_code} twice: {_message(resp)}")

    @staticmethod
    def _json(resp: httpx.Response, what: str) -> dict:
        try:
            return resp.json()
        except ValueError:
            raise HarnessFault(f"{what}: the API server's answer is not JSON: {resp.text[:200]}") from None

    def resource(self, obj: dict) -> tuple[str, bool]:
        """(plural, namespaced) of the object's kind, from the API server's discovery."""
        api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        if api_version not in self._resources:
            path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            resp = self._send("GET", path, f"discovery of {api_version}")
            if resp.status_code == 404:
                raise ManifestRejected(
                    f"{_describe(obj)}: the API server serves no {api_version} (is the CRD that defines it installed?)"
                    + channel_hint(obj)
                )
            if resp.status_code >= 400:
                raise HarnessFault(f"discovery of {api_version} failed ({resp.status_code}): {_message(resp)}")
            self._resources[api_version] = {
                r["kind"]: (r["name"], bool(r.get("namespaced")))
                for r in self._json(resp, f"discovery of {api_version}").get("resources", [])
                if "/" not in r["name"]
            }
        try:
            return self._resources[api_version][kind]
        except KeyError:
            raise ManifestRejected(
                f"{_describe(obj)}: the API server has no kind {kind} in {api_version}" + channel_hint(obj)
            ) from None

    def path(self, obj: dict) -> str:
        plural, namespaced = self.resource(obj)
        api_version = obj["apiVersion"]
        prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        meta = obj.get("metadata") or {}
        if not meta.get("name"):
            raise ManifestRejected(f"{obj.get('kind')} without metadata.name: name it")
        if namespaced:
            return f"{prefix}/namespaces/{meta.get('namespace') or 'default'}/{plural}/{meta['name']}"
        return f"{prefix}/{plural}/{meta['name']}"

    def apply(self, objs: Iterable[dict]) -> list[dict]:
        """Server-side apply of each object, in order; the first refusal raises ManifestRejected
        with the server's message on one line. Returns what the server stored."""
        return [self.apply_at(self.path(obj), obj) for obj in objs]

    def apply_at(self, url: str, obj: dict) -> dict:
        """Server-side apply of `obj` at a known URL (a subresource such as a Pod's status too)."""
        what = f"applying {_describe(obj)}"
        resp = self._send(
            "PATCH",
            url,
            what,
            params={"fieldManager": self.field_manager, "force": "true", "fieldValidation": "Strict"},
            content=json.dumps(obj),
            headers={"Content-Type": APPLY_CONTENT_TYPE},
        )
        if _refused(resp):
            raise ManifestRejected(f"the API server rejected {_describe(obj)}: {_message(resp)}")
        if resp.status_code >= 400:
            raise HarnessFault(f"{what}: the API server answered {resp.status_code}: {_message(resp)}")
        return self._json(resp, what)

    def pod_log(self, namespace: str, pod: str, container: str) -> str:
        """The container's log, as `kubectl logs` prints it: one request on this connection, where
        a `kubectl logs` process per read cost the kind suites a process start and a new TLS
        session each time a trace read an access log."""
        what = f"the log of {namespace}/{pod} container {container}"
        resp = self._send(
            "GET", f"/api/v1/namespaces/{namespace}/pods/{pod}/log", what, params={"container": container}
        )
        if resp.status_code >= 400:
            raise HarnessFault(f"{what}: the API server answered {resp.status_code}: {_message(resp)}")
        return resp.text

    def delete(self, objs: Iterable[dict]) -> None:
        """Delete each object (gone already is fine); returns without waiting for finalizers,
        as `kubectl delete --wait=false`."""
        for obj in objs:
            what = f"deleting {_describe(obj)}"
            resp = self._send("DELETE", self.path(obj), what, params={"propagationPolicy": "Background"})
            if resp.status_code not in (200, 202, 404):
                raise HarnessFault(f"{what} failed ({resp.status_code}): {_message(resp)}")
