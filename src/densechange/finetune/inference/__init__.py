"""Inference: the change predictor, sliding windows, whole-scene streaming and scoring."""
