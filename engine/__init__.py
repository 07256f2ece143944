"""Run machinery shared by both training stages.

Pretraining and finetuning differ in their model and data, not in how a run is driven: config
loading, distributed set-up, seeding, the training loop, resumable state and logging live here,
once. ``finetune`` imports this package; nothing here knows which method it runs.
"""
