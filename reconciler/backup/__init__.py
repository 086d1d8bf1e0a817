"""Backups end to end: engines' raw streams, compressed and hashed into the stores, with metadata."""
