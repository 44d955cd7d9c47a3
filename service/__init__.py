"""remediate: turns firing Alertmanager alerts into durable, safe remediation runs on Temporal."""
