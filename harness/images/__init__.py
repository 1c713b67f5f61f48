"""Everything the kind backend runs, built on this machine: the Docker engine it runs in
(engine.py), the kind base and node images (kind_node.py), the Kubernetes component images
(components.py), Istio's pilot and proxyv2 (istio.py). See docs/kind-backend.md.
"""
