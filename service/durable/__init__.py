"""The Temporal side: the run, delivery and governor workflows and their activities."""
