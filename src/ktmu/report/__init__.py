"""What a person reads: result tables, zero-shot tables and world listings."""
