"""The governor adapter: its shards, the global budget's keeper and the kill switch board, over the service's own
Temporal."""

from service.adapters.governor.client import GovernorClient

__all__ = ["GovernorClient"]
