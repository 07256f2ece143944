from finetune.train import cli

cli()
