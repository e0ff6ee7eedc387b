"""Baselines and comparison: lifecycle, store, values, normalization, provenance."""
