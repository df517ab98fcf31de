"""Data protection: validated Chinese identifiers and the reference data they need."""
