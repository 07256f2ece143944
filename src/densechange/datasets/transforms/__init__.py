"""Batched tensor transforms: photometric jitter and geometry with correspondence."""
