"""The Kubernetes backends: kind (a cluster of its own) and cluster (an existing one)."""
