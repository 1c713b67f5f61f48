"""egress-harness: the library behind the suites (backends, Envoy admin, PKI, curl results)."""
