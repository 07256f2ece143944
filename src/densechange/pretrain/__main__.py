from densechange.pretrain.train import cli

cli()
