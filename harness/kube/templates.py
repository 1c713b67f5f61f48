"""The Kubernetes-side templates (fixtures/kind/): namespaces, pods, trust Secrets, CoreDNS."""

from __future__ import annotations

import functools

import jinja2

from harness.manifests import FIXTURES

KIND_FIXTURES = FIXTURES / "kind"


@functools.lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(KIND_FIXTURES)), undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )


def render_fixture(name: str, **values: object) -> str:
    return _env().get_template(name).render(**values)
