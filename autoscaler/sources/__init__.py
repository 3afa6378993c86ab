"""Queue sources: they measure (depth, oldest wait, in-flight, counters) and never decide."""
