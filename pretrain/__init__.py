"""SaDL dense, semantic-aware contrastive pretraining of remote-sensing encoders.

Entry point: ``python -m pretrain --config FILE [key=value ...]`` (see :mod:`pretrain.train`).
The shared run machinery that finetuning reuses lives in :mod:`pretrain.engine`.
"""
