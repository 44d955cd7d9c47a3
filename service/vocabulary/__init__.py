"""The words every layer uses: errors, modes, durations, approvals and outcomes, redaction."""
