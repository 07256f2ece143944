"""Command-line front-ends of the dataset tools and the weights commands.

``datasets`` and ``checkpoints`` sit below the run machinery and may not import it, so the commands
that front them (``densechange check | synth | tile | stack | stats`` and ``densechange weights ...``)
live here, where the one grammar of :func:`densechange.engine.cli.parse_command` is at hand: each
reads its keys, calls the package's own function and prints the result. The stages' commands live in
the stages themselves (``densechange.pretrain.train``, ``densechange.finetune.predict``, ...).
"""
