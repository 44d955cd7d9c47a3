"""Replay: alert history fed through the current playbooks and rails on a virtual clock, offline."""
