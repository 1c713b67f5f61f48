"""The Kubernetes backends: kind (a cluster of its own) and cluster (an existing one).

Empty on purpose: importing any module of the package runs this file first, so code here that
imported kind.py or cluster.py would make an import cycle with each of them. The plugin's entry
point is harness/backends/remote.py (make_remote_backend).
"""
