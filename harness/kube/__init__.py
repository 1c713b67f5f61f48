"""The Kubernetes layer every backend shares: kubectl, the templates of fixtures/kind/, the gateway's
trust Secrets. It imports nothing from harness/backends or harness/local, which both build on it."""
