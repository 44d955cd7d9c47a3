"""The audit trail's stores: Postgres in production, SQLite under `remediate dev`."""
