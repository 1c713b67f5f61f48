"""The hosts of the "internet" the stand-in plays, as data every backend reads.

A site is a host name (or a wildcard such as `*.cloud.example`), the concrete names that resolve
to the stand-in in every pod (the name itself, or for a wildcard the names a spec says to try),
the names on its server certificate (issued by the test public CA the pods trust), and the ports
it needs beyond the stand-in's fixed ones (harness/stand_in.py), each with the stand-in's protocol
(`http`, `https`, `mtls`, `tcp`).

The seed suites' one site is edition.cnn.com. A team's egress spec (harness/spec/) replaces the
table with its own hosts before the backend starts (`use`), as it does the pod table; the seed's
host is then data of the seed suites, not a constant of the harness.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.pki import CertAuthority, Issued


@dataclass(frozen=True)
class Site:
    name: str
    names: tuple[str, ...]  # what resolves to the stand-in (concrete names only)
    cert_names: tuple[str, ...]  # the server certificate's DNS SANs
    ports: dict[int, str] = field(default_factory=dict)  # extra stand-in ports: port -> protocol

    @property
    def file_stem(self) -> str:
        return self.name.replace("*", "wildcard")


# The seed's host: exactly the name the suites reach, not the real site's `*.cnn.com` (a gateway
# told to verify another CNN name then fails verification, as it should).
SEED_SITE = Site("edition.cnn.com", ("edition.cnn.com",), ("edition.cnn.com",))

SITES: list[Site] = [SEED_SITE]


def use(sites: list[Site]) -> None:
    """Serve `sites` instead (in place: every module holding SITES sees the new table)."""
    SITES[:] = sites


def resolved_names() -> list[str]:
    """Every name that resolves to the stand-in, in table order, once each."""
    return list(dict.fromkeys(n for site in SITES for n in site.names))


def extra_ports() -> dict[int, str]:
    """The stand-in's listeners beyond its fixed ones, over every site."""
    ports: dict[int, str] = {}
    for site in SITES:
        ports.update(site.ports)
    return dict(sorted(ports.items()))


def default_site() -> Site:
    """The site whose certificate the stand-in presents without a matching SNI."""
    return SITES[0]


def issue_certificates(ca: CertAuthority) -> list[tuple[Site, Issued]]:
    """A server certificate per site, issued by the test public CA for exactly its cert_names."""
    return [(site, ca.issue_server(site.file_stem, list(site.cert_names))) for site in SITES]
