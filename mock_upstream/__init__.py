"""mock_upstream: a stand-in for edition.cnn.com that records what reaches it.

Run it as `python3 -m mock_upstream --help`. Standard library only, and only the part of it that
Debian's python3-minimal ships (no json, asyncio, http or dataclasses), because it runs as a plain
process in a network namespace and in a container built from a minimal Debian rootfs.

Modules: cli (flags, ready line, signals), server (listeners), connection (one connection's TLS
and HTTP), clienthello (offered ALPN), tls, http1, routes (what the site answers), control (the
JSON control API), records (record store and JSON schema), content (page bodies), jsonout.
"""
