"""Runs of the engine: sessions serving many methods from one original, benches that resume, tuning, records and timing."""
