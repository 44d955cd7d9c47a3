"""The HTTP routes: the webhook, approvals, the rails, runs, health and metrics."""
