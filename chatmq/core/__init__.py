"""Foundation layer: errors, ids, envelopes and records, topics, settings, metrics, tasks, auth primitives, the bus."""
