"""The Kubernetes target, through lightkube."""
