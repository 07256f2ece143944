from densechange.finetune.train import cli

cli()
