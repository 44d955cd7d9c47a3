"""Adapters: the only place where remediate talks to other systems."""
