"""Slack: approval requests as Block Kit messages, the clicks on their buttons, and its settings."""
