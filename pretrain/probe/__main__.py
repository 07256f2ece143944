from pretrain.probe.cli import cli

cli()
