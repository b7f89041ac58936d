"""Reproducing the reference study (Tan & Gong, 2025): recipes in ``configs/`` and the image lists of its worlds."""
