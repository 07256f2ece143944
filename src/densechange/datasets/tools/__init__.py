"""The dataset tools behind the commands: check, tile and stack."""
