"""Scenario manifests: Jinja2 templates in fixtures/, rendered once per scenario × mode × values.

The stages (which templates each applies, which values differ) are data beside the templates, in
`fixtures/stages.yaml`; the modes (the sidecar → gateway hop) are `Mode` values here. A check reads
the values its stage rendered with, so "which gateway port" has one source. Every backend applies
the same rendering. At session start every stage × mode is rendered and validated once by the real
`istioctl validate` (`FixtureSet.check`, `validate_all`): a broken template or a field Istio refuses
stops the run with one line naming the template, before anything starts.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import jinja2
import yaml

from harness import gateway_api
from harness.errors import HarnessError, ManifestRejected
from harness.project_files import FIXTURES

VIA_HEADER = "x-egress-harness-via"
# In stages.yaml, this name stands for seed §1's Gateway, DestinationRule and VirtualService.
GATEWAY_ROUTE = (
    "http-gateway/gateway.yaml.j2",
    "http-gateway/destinationrule.yaml.j2",
    "http-gateway/virtualservice.yaml.j2",
)
# The same in the Gateway API (istio.io's "Gateway API" tab): a Gateway istiod deploys a gateway
# for, the mesh leg and the gateway leg as HTTPRoutes, the hop's DestinationRule.
GATEWAY_API_ROUTE = (
    "gateway-api/http-gateway/gateway.yaml.j2",
    "gateway-api/http-gateway/destinationrule.yaml.j2",
    "gateway-api/http-gateway/httproutes.yaml.j2",
)
ROUTE_TOKEN = "gateway_route"
APIS = ("istio", "gateway-api")


@dataclass(frozen=True)
class Mode:
    """The sidecar → gateway hop of a scenario: the one place that says which gateway port a
    mode uses and whether the hop is mesh mTLS."""

    name: str
    gateway_port: int
    hop_tls: bool
    # Which API routes through the gateway: "istio" (Gateway, VirtualService) or "gateway-api".
    api: str = "istio"

    @property
    def hop(self) -> str:
        """The hop's mode alone (istio-mutual | plaintext): what the templates branch on."""
        return self.name.removeprefix("gateway-api-")

    def __str__(self) -> str:
        return self.name


MODE_VALUES = {
    m.name: m
    for m in (
        Mode("istio-mutual", 443, True),
        Mode("plaintext", 80, False),
        Mode("gateway-api-istio-mutual", 443, True, "gateway-api"),
        Mode("gateway-api-plaintext", 80, False, "gateway-api"),
    )
}
MODES = ("istio-mutual", "plaintext")  # the Istio API's: every suite test runs in both (test ids)
GATEWAY_API_MODES = ("gateway-api-istio-mutual", "gateway-api-plaintext")  # sections with a Gateway API form
ALL_MODES = MODES + GATEWAY_API_MODES


def mode_of(mode: str | Mode) -> Mode:
    if isinstance(mode, Mode):
        return mode
    if mode not in MODE_VALUES:
        raise HarnessError(f"unknown mTLS mode {mode!r}: use one of {', '.join(ALL_MODES)}")
    return MODE_VALUES[mode]


@dataclass(frozen=True)
class Stage:
    """`templates` as stages.yaml lists them (the route token unexpanded); `gateway_api` the
    stage's own Gateway API list when the two APIs differ by more than the route (None: the
    same list, the token expanding per API; () : the stage has no Gateway API form)."""

    name: str
    raw: tuple[str, ...]
    values: tuple[tuple[str, object], ...] = ()
    gateway_api: tuple[str, ...] | None = None

    def templates_for(self, api: str = "istio") -> tuple[str, ...]:
        if api == "gateway-api":
            if self.gateway_api == ():
                raise HarnessError(
                    f"stage {self.name!r} has no Gateway API form (give it a `gateway-api:` list in fixtures/stages.yaml)"
                )
            raw = self.gateway_api if self.gateway_api is not None else self.raw
            route = GATEWAY_API_ROUTE
        else:
            raw, route = self.raw, GATEWAY_ROUTE
        out: list[str] = []
        for t in raw:
            out += route if t == ROUTE_TOKEN else [t]
        return tuple(out)

    @property
    def templates(self) -> tuple[str, ...]:
        """The Istio API's templates."""
        return self.templates_for("istio")

    def has_api(self, api: str) -> bool:
        return api == "istio" or self.gateway_api != ()


PLACEHOLDER_TRUST = {
    "trust": {"ca_certificates": "/placeholder/ca.pem"},
    "wrong_trust": {"ca_certificates": "/placeholder/other-ca.pem"},
    "client": {"client_certificate": "/placeholder/client.pem", "private_key": "/placeholder/client.key"},
}


def _shown(path: Path) -> str:
    """A path as the user knows it: relative to the repository when it is in it."""
    try:
        return str(path.relative_to(FIXTURES.parent))
    except ValueError:
        return str(path)


class FixtureSet:
    """A fixtures folder: its stages.yaml and templates. `FIXTURES` is the project's; tests make
    broken copies."""

    def __init__(self, root: Path):
        self.root = root
        self.stages_file = root / "stages.yaml"
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(root)),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )
        self._stages: dict[str, Stage] | None = None
        self._rendered: dict[str, str] = {}

    # ------------------------------------------------------------------ stages
    @property
    def stages(self) -> dict[str, Stage]:
        if self._stages is None:
            self._stages = self._load_stages()
        return self._stages

    def _load_stages(self) -> dict[str, Stage]:
        """Read stages.yaml; one line naming the file and the stage for anything malformed."""
        path = self.stages_file
        docs = read_yaml_documents(path)
        data = docs[0] if len(docs) == 1 else None
        if not isinstance(data, dict):
            raise HarnessError(f"{path}: expected a mapping of stage name → {{templates, values}}")
        stages: dict[str, Stage] = {}
        for name, spec in data.items():
            if (
                not isinstance(spec, dict)
                or set(spec) - {"templates", "values", "gateway-api"}
                or not isinstance(spec.get("templates"), list)
            ):
                raise HarnessError(
                    f"{path}: stage {name!r} needs a templates list (and optional values, gateway-api), got {spec!r}"
                )
            gateway_api = spec.get("gateway-api", None)
            if gateway_api is not None and not isinstance(gateway_api, list):
                raise HarnessError(f"{path}: stage {name!r}: gateway-api must be a list of templates ([] for none)")
            stage = Stage(
                name,
                tuple(spec["templates"]),
                tuple(sorted((spec.get("values") or {}).items())) if isinstance(spec.get("values") or {}, dict) else (),
                None if gateway_api is None else tuple(gateway_api),
            )
            if not isinstance(spec.get("values") or {}, dict):
                raise HarnessError(f"{path}: stage {name!r}: values must be a mapping")
            for api in APIS:
                for t in stage.templates_for(api) if stage.has_api(api) else ():
                    if not (self.root / t).is_file():
                        raise HarnessError(f"{path}: stage {name!r} names {t}, which is not in {self.root}")
            stages[name] = stage
        return stages

    def stage(self, name: str) -> Stage:
        if name not in self.stages:
            raise HarnessError(f"unknown scenario stage {name!r}: known stages are {', '.join(self.stages)}")
        return self.stages[name]

    # ------------------------------------------------------------------ rendering
    def values(self, stage: str, *, mode: str | Mode, trust: dict | None = None, **extra: object) -> dict:
        """The values `stage` renders with in `mode`: the mode's, then the stage's, then `extra`."""
        m = mode_of(mode)
        trust = trust or {}
        values: dict[str, object] = {
            "mode": m.hop,
            "api": m.api,
            "namespace": "default",
            # The Gateway API's Gateway and deployed gateway (a stage in another namespace, such as
            # a DestinationRule for test-egress's sidecar, still names the gateway there).
            "gateway_namespace": gateway_api.SEED_NAMESPACE,
            "via_header": VIA_HEADER,
            "gateway_port": m.gateway_port,
            "hop_tls": m.hop_tls,
            "upstream_port": 80,
            "origination": "simple",
            "trust": trust.get("trust", {}),
            "wrong_trust": trust.get("wrong_trust", {}),
            "client": trust.get("client", {}),
        }
        values.update(dict(self.stage(stage).values))
        values.update(extra)
        return values

    def render(self, stage: str, *, mode: str | Mode, trust: dict | None = None, **extra: object) -> list[dict]:
        """The manifests of `stage` in `mode` as a list of objects (a new list each call)."""
        values = self.values(stage, mode=mode, trust=trust, **extra)
        key = json.dumps({"stage": stage, "values": values}, sort_keys=True, default=str)
        if key not in self._rendered:
            self._rendered[key] = json.dumps(self._render(self.stage(stage), values))
        return json.loads(self._rendered[key])

    def _render(self, stage: Stage, values: dict) -> list[dict]:
        return self._render_templates(stage.templates_for(str(values.get("api", "istio"))), values)

    def _render_templates(self, templates: tuple[str, ...], values: dict) -> list[dict]:
        objs: list[dict] = []
        for template in templates:
            try:
                text = self.env.get_template(template).render(**values)
            except jinja2.TemplateError as exc:
                raise self._template_error(template, exc) from None
            try:
                docs = [d for d in yaml.safe_load_all(text) if d]
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                where = f" (rendered line {mark.line + 1})" if mark else ""
                problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
                raise HarnessError(
                    f"{_shown(self.root / template)} renders to invalid YAML{where}: {problem} (fix the template)"
                ) from None
            for obj in docs:
                if not isinstance(obj, dict) or not obj.get("kind") or not (obj.get("metadata") or {}).get("name"):
                    raise HarnessError(
                        f"{_shown(self.root / template)} renders an object without kind or metadata.name (fix the template)"
                    )
                objs.append(obj)
        return objs

    def _template_error(self, template: str, exc: jinja2.TemplateError) -> HarnessError:
        """One line naming the file and line of a broken template."""
        if isinstance(exc, jinja2.TemplateSyntaxError):
            name = _shown(Path(exc.filename) if exc.filename else self.root / (exc.name or template))
            return HarnessError(f"{name}:{exc.lineno}: template syntax error: {exc.message} (fix the template)")
        if isinstance(exc, jinja2.UndefinedError):
            return HarnessError(
                f"{_shown(self.root / template)}: {exc.message} (the backend must provide it, or fix the template)"
            )
        return HarnessError(f"{_shown(self.root / template)}: {type(exc).__name__}: {exc} (fix the template)")

    # ------------------------------------------------------------------ checks at session start
    def renderings(self, trust: dict | None = None) -> list[tuple[str, str, str, dict]]:
        """(stage, mode, template, object) for every stage × mode."""
        out = []
        for stage in self.stages.values():
            for mode in ALL_MODES:
                m = mode_of(mode)
                if not stage.has_api(m.api):
                    continue
                values = self.values(stage.name, mode=mode, trust=trust or PLACEHOLDER_TRUST)
                for template in stage.templates_for(m.api):
                    for obj in self._render_templates((template,), values):
                        out.append((stage.name, mode, template, obj))
        return out

    def check(self) -> int:
        """Render every stage in every mode once; returns the number of objects."""
        return len(self.renderings())

    def validate_all(self, istioctl: Path, trust: dict | None = None) -> int:
        """Every rendered object through the real `istioctl validate`, once: a field Istio refuses
        stops the run with one line naming the template, stage and mode. Returns the count."""
        from harness.istioctl_validate import IstioctlValidator

        validator = IstioctlValidator(istioctl)
        seen: set[str] = set()
        count = 0
        for stage, mode, template, obj in self.renderings(trust):
            key = json.dumps(obj, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            try:
                validator.validate([obj])
            except ManifestRejected as exc:
                raise HarnessError(
                    f"{_shown(self.root / template)} (stage {stage}, {mode}): {exc} (fix the template)"
                ) from None
            count += 1
        return count


@functools.lru_cache(maxsize=8)
def fixture_set(root: Path = FIXTURES) -> FixtureSet:
    return FixtureSet(root)


def stages() -> dict[str, Stage]:
    return fixture_set().stages


def stage_values(stage: str, *, mode: str | Mode, trust: dict | None = None, **extra: object) -> dict:
    return fixture_set().values(stage, mode=mode, trust=trust, **extra)


def render(stage: str, *, mode: str | Mode, trust: dict | None = None, **extra: object) -> list[dict]:
    return fixture_set().render(stage, mode=mode, trust=trust, **extra)


def check_fixtures() -> int:
    return fixture_set().check()


def __getattr__(name: str) -> object:
    # STAGES is read lazily, so a malformed stages.yaml is reported by the session's check (one
    # line), not as an import error.
    if name == "STAGES":
        return stages()
    raise AttributeError(name)


def to_yaml(objs: list[dict]) -> str:
    return yaml.safe_dump_all(objs, sort_keys=False)


def read_yaml_documents(path: Path, what: str = "file") -> list:
    """The documents of a YAML file, or one HarnessError line naming the file and line."""
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if d]
    except OSError as exc:
        raise HarnessError(f"cannot read {what} {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise HarnessError(f"malformed {what} {path}{where}: {getattr(exc, 'problem', exc)} (fix the YAML)") from None


def load_manifest_file(path: Path) -> list[dict]:
    """User-supplied YAML (a file of one or more documents), with a clear error when malformed."""
    docs = read_yaml_documents(path, "manifest")
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "metadata" not in d:
            raise HarnessError(f"manifest {path}: every document needs kind and metadata")
    return docs
