"""Run layer: the CLI, the embedded stack, the cluster parts, ops endpoints and admin commands."""
