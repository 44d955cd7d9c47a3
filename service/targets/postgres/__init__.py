"""The Postgres target: queries, guarded writes, the idempotency ledger."""
