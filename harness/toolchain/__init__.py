"""Tools the harness builds for itself (not Istio's own binaries, see harness.istio_binaries)."""
