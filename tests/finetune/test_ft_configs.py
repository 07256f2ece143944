"""The shipped finetuning configs load, hold the documented recipe, and the demo config runs."""
from pathlib import Path

from densechange.engine.config import load_config
from densechange.finetune.config import CHOICES, FinetuneConfig
from densechange.finetune.train import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "finetune"


def test_recipe_config_is_the_documented_protocol():
    cfg = load_config(FinetuneConfig, CONFIGS / "deepcl_resnet18.yaml", ["data.root=/data/levir"], choices=CHOICES)
    assert cfg.data.crop_size == 256 and cfg.data.flip and cfg.data.rot90
    assert cfg.trainer.batch_size == 8 and cfg.trainer.epochs == 200
    assert (cfg.trainer.optim.name, cfg.trainer.optim.lr, cfg.trainer.optim.momentum) == ("sgd", 0.01, 0.9)
    assert (cfg.trainer.schedule.name, cfg.trainer.schedule.power) == ("poly", 1.0)
    assert (cfg.model.name, cfg.model.backbone, cfg.model.prior) == ("deepcl", "resnet18", "attention")
    assert (cfg.model.hscl_margin, cfg.model.hscl_gamma, cfg.model.hscl_weight) == (1.0, 2.0, 1.0)


def test_demo_config_runs(tmp_path):
    run_dir = tmp_path / "demo"
    assert main(["--config", str(CONFIGS / "demo.yaml"), "data.synthetic_pairs=8", "data.synthetic_val_pairs=2",
                 "trainer.max_steps=1", "trainer.device=cpu", "model.neck_channels=16", f"run.dir={run_dir}"]) == 0
    assert (run_dir / "final.safetensors").is_file()
