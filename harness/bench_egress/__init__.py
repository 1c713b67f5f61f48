"""What each egress path costs (`make bench-egress`, `python -m harness.bench_egress`).

Issue 12. Mesh teams ask what the egress gateway, mTLS on the sidecar → gateway hop and TLS
origination cost, and whether an Istio upgrade made it worse. Nobody publishes it: istio/tools'
perf benchmarks have no egress configuration; the only egress study is a 2019 blog post on Istio 1.0.
So each path of the seed runs on the local mesh (real istiod, real Envoys, real iptables), with the
manifests the suites apply (harness.manifests), under fortio load from the client pod, and every
figure is also given relative to a path without Istio measured in the same run.

Modules: paths (the paths and their config), upstream (fortio in the stand-in's place), load
(fortio runs in a pod), procstat (CPU and memory from /proc), runner (the run), report (JSON,
report.md), plot (the PNG), compare (two reports side by side).
"""
