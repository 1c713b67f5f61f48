"""mock_upstream: a stand-in upstream that records what reaches it, edition.cnn.com by default.

As edition.cnn.com it answers 301 to https on the plain-HTTP port and /politics over TLS. Any other
host a test declares (by its Host header, with a --site-cert chosen by SNI, on extra listeners from
--port) gets a plain 200, or the status /status/NNN asks for, on every listener.

Run it as `python3 -m mock_upstream --help`. Standard library only, and only the part of it that
Debian's python3-minimal ships (no json, asyncio, http or dataclasses), because it runs as a plain
process in a network namespace and in a container built from a minimal Debian rootfs.

Modules: cli (flags, ready line, signals), server (listeners), connection (one connection's TLS
and HTTP), clienthello (offered ALPN), tls, http1, routes (what each host answers), control (the
JSON control API), records (record store and JSON schema), content (page bodies), jsonout.
"""
