from densechange.pretrain.probe.cli import cli

cli()
