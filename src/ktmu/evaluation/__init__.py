"""Measuring a model: zero-shot accuracy, the study's protocol and metrics, run flags, intervals over seeds."""
