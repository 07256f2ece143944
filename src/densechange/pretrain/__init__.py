"""SaDL dense, semantic-aware contrastive pretraining of remote-sensing encoders.

Entry point: ``densechange pretrain --config FILE [key=value ...]`` (see :mod:`densechange.pretrain.train`).

- :mod:`densechange.pretrain.sadl`: the method (views, point sampling, model, heads, losses, background swap);
- :mod:`densechange.pretrain.probe`: dense-feature probes of an encoder, as a command and during a run;
- :mod:`densechange.pretrain.pseudo`: pseudo-masks for image folders without masks;
- ``train``, ``config``, ``data``, ``epoch_end``: the run itself.

The run machinery it shares with finetuning is :mod:`densechange.engine`.
"""
