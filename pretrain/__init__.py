"""SaDL dense, semantic-aware contrastive pretraining of remote-sensing encoders.

Entry point: ``python -m pretrain --config FILE [key=value ...]`` (see :mod:`pretrain.train`).

- :mod:`pretrain.sadl`: the method (views, point sampling, model, heads, losses, background swap);
- :mod:`pretrain.probe`: dense-feature probes of an encoder, as a command and during a run;
- :mod:`pretrain.pseudo`: pseudo-masks for image folders without masks;
- ``train``, ``config``, ``data``, ``epoch_end``: the run itself.

The run machinery it shares with finetuning is the top-level :mod:`engine` package.
"""
