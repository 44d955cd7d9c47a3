"""One adapter per target system: the only code that touches Postgres, Kubernetes, Redis, HTTP, ..."""
