"""Go programs the kind backend needs when no registry can be reached, built from the Go module proxy.

Kubernetes, etcd, CoreDNS, containerd, crictl, kube-network-policies and kind are built here, each
once, into `<cache_root()>/toolchain/<name>-<key>/bin`, where the key is a hash of everything that
decides the output (module versions, replaces, packages, flags, Go version). See gobuild.py for the
mechanism and programs.py for the pins and why each one is what it is.
"""
