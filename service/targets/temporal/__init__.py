"""Temporal as a target system (workflows of the applications remediate fixes)."""
