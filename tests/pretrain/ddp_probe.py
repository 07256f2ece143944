"""Run ``densechange pretrain`` under torchrun while recording what each rank sees.

Used by the launches of conftest.py (test_pretrain_ddp.py, test_multinode.py). Each rank writes
``<probe_dir>/rank<R>.json`` with, per forward: the sample names, a digest of the augmentation
generator and a checksum of every weight; plus every file the rank opened for writing (an audit
hook), so the tests can check that only rank 0 writes into the run folder.
"""
import atexit
import hashlib
import json
import os
import sys

import torch

import densechange.pretrain.train as train
from densechange.pretrain.sadl.model import SaDL

probe_dir = os.environ["PROBE_DIR"]
rank = int(os.environ.get("RANK", "0"))
record = {"steps": [], "writes": []}


def audit(event, args):
    if event == "open" and len(args) > 1 and isinstance(args[1], str) and any(c in args[1] for c in "wax+"):
        record["writes"].append(str(args[0]))
    elif event in ("os.rename", "os.mkdir", "os.remove"):
        record["writes"].append(str(args[1] if event == "os.rename" else args[0]))


sys.addaudithook(audit)


class RecordingSaDL(SaDL):
    def forward(self, batch, generator=None):
        state = generator.get_state() if generator is not None else torch.empty(0)
        weights = hashlib.sha256(b"".join(p.detach().cpu().numpy().tobytes() for p in self.parameters())).hexdigest()
        record["steps"].append({"names": list(batch["name"]), "gen": hashlib.sha256(state.numpy().tobytes()).hexdigest(), "weights": weights})
        return super().forward(batch, generator)


def dump():
    with open(os.path.join(probe_dir, f"rank{rank}.json"), "w") as fh:
        json.dump(record, fh)


atexit.register(dump)
train.SaDL = RecordingSaDL
sys.exit(train.main(sys.argv[1:]))
