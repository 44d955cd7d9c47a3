"""The service composed from its parts: web and worker, lifecycle, watchers."""
