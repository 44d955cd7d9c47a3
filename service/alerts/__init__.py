"""What Alertmanager sends, and matching its labels."""
