"""A team's own egress, tested: the spec format (model.py), its reader (load.py), its manifests
and Secrets (manifests.py), the pods and hosts it puts in the mesh (world.py), and each
expectation's hop checks (checks.py). README's "Test your own egress" is the user's guide."""
