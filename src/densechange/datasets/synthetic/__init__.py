"""The embedded synthetic data: the procedural scene painter and the datasets built on it."""
