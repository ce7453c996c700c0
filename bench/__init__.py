"""Benchmarks and the simulator: commands of their own (``chatmq bench ...``,
``chatmq devices simulate``), not part of the SDK."""
