"""Command line: parse flags, start the listeners, print the ready line, run until SIGTERM/SIGINT.

Exit status: 0 after SIGTERM or SIGINT; 1 when the server cannot start (certificate, bind); 2 for
bad flags. Every failure is one line on stderr, `mock_upstream: error: ...`, never a traceback.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import signal
import sys
import threading
from typing import NoReturn

from .content import MIN_POLITICS_BYTES, POLITICS_BYTES
from .control import TOKEN_ENV
from .errors import StartupError
from .jsonout import dumps
from .server import EXTRA_PROTOS, Config, Server
from .tls import SiteCert

PROG = "mock_upstream"

DESCRIPTION = """\
Stand-in for edition.cnn.com in egress tests, and for any other host a test declares. For
edition.cnn.com (a Host header naming --redirect-host, an IP address or nothing) the plain-HTTP
port answers every request with 301 to https://<redirect-host><path>, and the TLS port (and the
optional mutual-TLS port) serves GET /politics (200, text/html, a deterministic page) and 404
elsewhere. Any other Host gets the same answers on every listener, plain or TLS: GET /status/NNN
answers NNN (200-599), any other path 200 with the text "mock_upstream: <host> <path>".
Every connection and request is recorded; read the records as JSON from the control port (GET
/healthz, /records, /connections, /requests; POST /reset).

Every TLS listener presents --cert, or the --site-cert whose NAME matches the client's SNI: an
exact name first, then a wildcard *.example.net for one more label (a.example.net, not
a.b.example.net nor example.net). --port adds listeners: http, https and mtls answer like the
ones above (the records' listener is the PROTO, their local_port tells them apart); tcp echoes
every byte it receives until the client closes, and records how many (bytes_received).

The control API may listen on its own address (--control-listen 127.0.0.1: only the stand-in's own
network namespace reaches it), and with MOCK_UPSTREAM_CONTROL_TOKEN in the environment it answers
only requests with `Authorization: Bearer <that token>` (401 otherwise).

When all sockets are bound, one JSON line goes to stdout, e.g.
  {"ready": true, "http": 80, "https": 443, "mtls": null, "control": 9901,
   "extra": [{"proto": "https", "port": 9443}, {"proto": "tcp", "port": 9000}],
   "listen": "0.0.0.0", "control_listen": "0.0.0.0", "control_token": false, "pid": 7}
Port 0 asks the kernel for a free port; the ready line and GET /healthz tell which one it gave.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        _fail(f"{message} (see --help)", 2)


def _fail(message: str, status: int) -> NoReturn:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(status)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {value}")
    return value


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r} (e.g. 0.0.0.0, 127.0.0.1, ::)") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value


# A DNS label: letters, digits and inner hyphens, at most 63 characters.
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def _dns_name(text: str) -> str:
    """A host name or a one-label wildcard (`*.example.net`), lower-cased; ArgumentTypeError if not."""
    name = text.lower()
    labels = name[2:].split(".") if name.startswith("*.") else name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise argparse.ArgumentTypeError(f"not a DNS name or *.wildcard: {text!r}")
    return name


def _site_cert(text: str) -> SiteCert:
    name, equals, files = text.partition("=")
    cert, comma, key = files.partition(",")
    if not equals or not comma or not cert or not key or "," in key:
        raise argparse.ArgumentTypeError(f"expected NAME=CERT,KEY (e.g. api.example.net=api.pem,api.key), got {text!r}")
    return SiteCert(_dns_name(name), cert, key)


def _extra_port(text: str) -> tuple[str, int]:
    proto, colon, port = text.partition(":")
    if not colon or proto not in EXTRA_PROTOS:
        raise argparse.ArgumentTypeError(
            f"expected PROTO:PORT with PROTO one of {', '.join(EXTRA_PROTOS)}, got {text!r}"
        )
    return proto, _port(port)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str):
        # A fixed width: without one argparse asks shutil for the terminal's, and shutil is not
        # in python3-minimal (Debian's argparse copes; upstream's does not).
        super().__init__(prog, max_help_position=30, width=100)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description=DESCRIPTION, formatter_class=_HelpFormatter)
    p.add_argument(
        "--listen",
        type=_address,
        default="0.0.0.0",
        metavar="ADDR",
        help="IP address every listener binds (default 0.0.0.0; :: for IPv6)",
    )
    p.add_argument(
        "--http-port",
        type=_port,
        default=80,
        metavar="PORT",
        help="plain-HTTP port that redirects to https (default 80)",
    )
    p.add_argument(
        "--https-port", type=_port, default=443, metavar="PORT", help="TLS port serving /politics (default 443)"
    )
    p.add_argument(
        "--mtls-port",
        type=_port,
        default=None,
        metavar="PORT",
        help="mutual-TLS port serving /politics; needs --client-ca (default: off)",
    )
    p.add_argument(
        "--control-port", type=_port, default=9901, metavar="PORT", help="plain-HTTP JSON control API (default 9901)"
    )
    p.add_argument(
        "--control-listen",
        type=_address,
        default=None,
        metavar="ADDR",
        help="IP address the control API binds (default: --listen's)",
    )
    p.add_argument(
        "--cert", required=True, metavar="FILE", help="PEM server certificate, optionally followed by its chain"
    )
    p.add_argument("--key", required=True, metavar="FILE", help="PEM private key of --cert")
    p.add_argument(
        "--client-ca",
        metavar="FILE",
        help="PEM CA(s) that must have signed the client certificate on the mutual-TLS listeners",
    )
    p.add_argument(
        "--redirect-host",
        default="edition.cnn.com",
        metavar="HOST",
        help="host served as edition.cnn.com, and named in the 301 location (default edition.cnn.com)",
    )
    p.add_argument(
        "--politics-bytes",
        type=int,
        default=POLITICS_BYTES,
        metavar="N",
        help=f"length of the /politics page (default {POLITICS_BYTES})",
    )
    p.add_argument(
        "--handshake-timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="give up on a TLS client that has not finished its handshake (default 10)",
    )
    p.add_argument(
        "--site-cert",
        type=_site_cert,
        action="append",
        default=[],
        metavar="NAME=CERT,KEY",
        help="PEM chain and key presented when SNI is NAME (a DNS name or *.example.net) on every TLS listener; repeatable",
    )
    p.add_argument(
        "--port",
        type=_extra_port,
        action="append",
        default=[],
        dest="extra_ports",
        metavar="PROTO:PORT",
        help="one more listener: http, https, mtls (needs --client-ca) or tcp (echo); repeatable",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log connections and requests to stderr")
    return p


def _check_extra_ports(args: argparse.Namespace) -> None:
    """Each --port its own port; 0 (the kernel picks) may repeat, since every 0 gets another."""
    fixed = {
        "--http-port": args.http_port,
        "--https-port": args.https_port,
        "--mtls-port": args.mtls_port,
        "--control-port": args.control_port,
    }
    seen: set[int] = set()
    for proto, port in args.extra_ports:
        if port == 0:
            continue
        if port in seen:
            raise StartupError(f"--port {proto}:{port}: port {port} is given twice (each listener needs its own)")
        for flag, fixed_port in fixed.items():
            if port == fixed_port:
                raise StartupError(f"--port {proto}:{port}: port {port} is already {flag}'s (choose another)")
        seen.add(port)
    if args.client_ca is None and any(proto == "mtls" for proto, _ in args.extra_ports):
        raise StartupError("--port mtls:PORT needs --client-ca FILE (the CA that signs accepted client certificates)")


def _check_site_certs(args: argparse.Namespace) -> None:
    names = [site.name for site in args.site_cert]
    for name in names:
        if names.count(name) > 1:
            raise StartupError(f"--site-cert {name} is given twice (one certificate per name)")


def _config(args: argparse.Namespace) -> Config:
    if args.mtls_port is not None and args.client_ca is None:
        raise StartupError("--mtls-port needs --client-ca FILE (the CA that signs accepted client certificates)")
    _check_extra_ports(args)
    _check_site_certs(args)
    extra_mtls = any(proto == "mtls" for proto, _ in args.extra_ports)
    if args.client_ca is not None and args.mtls_port is None and not extra_mtls:
        raise StartupError(
            "--client-ca is only used by the mutual-TLS listeners; add --mtls-port PORT or --port mtls:PORT"
        )
    if args.politics_bytes < MIN_POLITICS_BYTES:
        raise StartupError(f"--politics-bytes must be at least {MIN_POLITICS_BYTES}, got {args.politics_bytes}")
    if not args.redirect_host or any(c in args.redirect_host for c in "/ \r\n"):
        raise StartupError(f"--redirect-host must be a host name (optionally :port), got {args.redirect_host!r}")
    return Config(
        listen=args.listen,
        http_port=args.http_port,
        https_port=args.https_port,
        mtls_port=args.mtls_port,
        control_port=args.control_port,
        cert=args.cert,
        key=args.key,
        client_ca=args.client_ca,
        redirect_host=args.redirect_host,
        politics_bytes=args.politics_bytes,
        handshake_timeout=args.handshake_timeout,
        verbose=args.verbose,
        control_listen=args.control_listen,
        control_token=os.environ.get(TOKEN_ENV) or None,
        site_certs=args.site_cert,
        extra_ports=args.extra_ports,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stop = threading.Event()
    # Handlers first: a SIGTERM that arrives while starting up still ends in a clean exit 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        config = _config(args)
    except StartupError as exc:
        _fail(str(exc), 2)
    server = Server(config)
    try:
        server.bind()
    except StartupError as exc:
        _fail(str(exc), 1)
    server.start()
    ready = {
        "ready": True,
        **server.ports(),
        "listen": args.listen,
        "control_listen": config.control_listen,
        "control_token": bool(config.control_token),
        "pid": os.getpid(),
    }
    try:
        sys.stdout.write(dumps(ready) + "\n")
        sys.stdout.flush()
    except OSError:
        pass  # nobody reads stdout; the control API still tells the ports
    # A timed wait keeps the main thread returning to the interpreter, where signal handlers run.
    while not stop.wait(0.5):
        pass
    server.stop()
    return 0
