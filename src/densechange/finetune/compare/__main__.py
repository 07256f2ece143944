from densechange.finetune.compare.cli import cli

cli()
