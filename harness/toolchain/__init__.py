"""Go programs the harness builds for itself from the Go module proxy (not Istio's own binaries,
see harness.istio_binaries): Kubernetes (kube-apiserver, kubectl and the kind node's binaries),
etcd, CoreDNS, containerd, crictl, the NetworkPolicy enforcer, kind, and fortio.

Each is built once, into `<cache_root()>/toolchain/<name>-<key>/bin`, where the key is a hash of
everything that decides the output (module versions, replaces, packages, flags, Go version). See
gobuild.py for the mechanism and programs.py for the pins and why each one is what it is.
"""
