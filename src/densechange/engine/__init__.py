"""Run machinery shared by both training stages.

Pretraining and finetuning differ in their model and data, not in how a run is driven: config
loading, distributed set-up, seeding, the training loop, resumable state and logging live here,
once. Both stages import this package; nothing here knows which method it runs. It also holds the
``densechange`` command's table (:mod:`densechange.engine.commands`), which names the stages'
entry points as strings and imports one only when it is chosen.
"""
