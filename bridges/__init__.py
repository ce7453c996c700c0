"""Bridges between a broker node and the bus: outboxes in, per-node deliveries out, presence in."""
