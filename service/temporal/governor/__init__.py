"""The governor adapter: its shards (`client`), the global budget's keeper and the kill switch board (`board`), over
the service's own Temporal. Nothing is imported here, so the kill switch command loads only the board."""
