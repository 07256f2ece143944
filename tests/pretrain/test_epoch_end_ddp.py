"""Epoch-end work sharded over two torchrun processes (gloo) gives what one process gives."""
import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from densechange.pretrain.data import SyntheticImages
from densechange.pretrain.pseudo.store import MaskStore

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("epoch_end_worker.py")


def launch(out: Path, processes: int, monkeypatch) -> dict:
    """The worker under torchrun with ``processes`` processes, or in this process for one."""
    out.mkdir()
    if processes == 1:  # a single process needs no launcher: the worker's main() here, on one thread like a worker
        spec = importlib.util.spec_from_file_location("epoch_end_worker", WORKER)
        worker = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(worker)
        threads, stdout = torch.get_num_threads(), io.StringIO()
        with monkeypatch.context() as m, torch.random.fork_rng(), contextlib.redirect_stdout(stdout):
            m.setenv("OUT_DIR", str(out))
            for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
                m.delenv(name, raising=False)
            torch.set_num_threads(1)
            try:
                assert worker.main() == 0
            finally:
                torch.set_num_threads(threads)
        return {"stdout": stdout.getvalue(), **json.loads((out / "scores.json").read_text())}
    env = {**os.environ, "OUT_DIR": str(out), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", str(WORKER)]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    return {"stdout": res.stdout, **json.loads((out / "scores.json").read_text())}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[int, dict]:
    root = tmp_path_factory.mktemp("epoch_end")
    with pytest.MonkeyPatch.context() as monkeypatch:
        return {n: {"dir": root / f"p{n}", **launch(root / f"p{n}", n, monkeypatch)} for n in (1, 2)}


@pytest.mark.numeric
@pytest.mark.slow
def test_sharded_probe_scores_equal_one_process(runs):
    one, two = runs[1]["probe"], runs[2]["probe"]
    assert one["probe_pixels"] == two["probe_pixels"] == 150  # 7 images x 40 pixels, bounded to probe.max_pixels
    assert one["probe_knn_index"].startswith("exact")
    for key in ("probe_knn_miou", "probe_knn_accuracy", "probe_kmeans_nmi", "probe_kmeans_purity"):
        assert two[key] == pytest.approx(one[key], abs=1e-12), key
    assert "probe: 150 pixels of 7 images (probe.max_pixels=150), kNN index: exact" in runs[2]["stdout"]


@pytest.mark.numeric
@pytest.mark.slow
def test_sharded_pseudo_mask_refresh_equals_one_process(runs):
    names = SyntheticImages(9, 64, seed=5).names
    assert runs[1]["refresh"] == runs[2]["refresh"] == {"pseudo_generation": 1.0, "pseudo_pixels": 300.0}
    for generation in (0, 1):  # colour-texture clusters, then the encoder's features
        folder = f"run/pseudo_masks_g{generation}"
        one, two = MaskStore(runs[1]["dir"] / folder, names), MaskStore(runs[2]["dir"] / folder, names)
        assert all(np.array_equal(a, b) for a, b in zip(one, two)), generation
        assert len({int(v) for m in two for v in np.unique(m)}) == 3  # every cluster is used
        # each process wrote its own windows and its index; nothing was gathered into one file
        assert sorted(p.name for p in (runs[2]["dir"] / folder).glob("*.json")) == ["rank00000.json", "rank00001.json"]
        assert len(list((runs[2]["dir"] / folder).glob("*/*.tif"))) == 9
