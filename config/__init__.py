"""Packaged configuration files (``chatmq.toml``: every key with its default)."""
