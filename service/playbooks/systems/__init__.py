"""Each target system as playbooks see it: its connection model, its step models, and its declaration."""
