"""Pseudo-masks for pretraining without labels: k-means classes, their refresh during a run, and their dataset."""
