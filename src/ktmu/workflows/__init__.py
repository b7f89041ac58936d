"""Workflows over the engine: sessions serving many methods from one original, benches that resume, tuning, seeds, audits of runs, records and timing."""
