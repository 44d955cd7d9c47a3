"""The service's own Temporal client: starting runs, the governor and the switch board."""
