"""Where approvals are asked and outcomes told: Slack, a webhook."""
