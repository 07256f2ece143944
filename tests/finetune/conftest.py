"""Shared fixtures of the finetuning tests: one tiny finetuning run that several tests read."""
from pathlib import Path

import pytest

from densechange.finetune.inference.windows import WindowSettings
from densechange.finetune.train import main

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"

# A few seconds on a CPU: 64 px synthetic pairs, timm's smallest ResNet + a thin FPN, 2 epochs of 2
# steps, fp32 whatever the CPU (precision=auto would pick bf16 on CPUs with AMX or AVX512-BF16).
TINY = [
    "data.root=synthetic",
    "data.synthetic_pairs=8",
    "data.synthetic_val_pairs=4",
    "data.synthetic_size=64",
    "model.encoder=random",
    "model.backbone=test_resnet",
    "model.neck_channels=16",
    "model.embed_dim=8",
    "model.decoder_channels=8",
    "trainer.epochs=2",
    "trainer.batch_size=4",
    "trainer.num_workers=0",
    "trainer.log_every=1",
    "trainer.device=cpu",
    "trainer.precision=fp32",
    "trainer.optim.name=adamw",
    "trainer.optim.lr=0.003",
    "val.triptychs=2",
]
WINDOW = {"size": 64, "overlap": 16, "margin": 4}  # the validation windows of the tiny run, and evaluate's
TINY += [f"val.window.{key}={value}" for key, value in WINDOW.items()]
TINY_WINDOW = [f"window.{key}={value}" for key, value in WINDOW.items()]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """Run folder of a finished tiny finetuning run (read it, do not write into it)."""
    run_dir = tmp_path_factory.mktemp("finetune") / "run"
    assert main([*TINY, f"run.dir={run_dir}"]) == 0
    return run_dir


@pytest.fixture(scope="session")
def tiny_overrides() -> list[str]:
    """Config overrides of the tiny run (without run.dir)."""
    return list(TINY)


@pytest.fixture(scope="session")
def tiny_window() -> list[str]:
    """Evaluation window overrides that match the tiny run's validation windows."""
    return list(TINY_WINDOW)


@pytest.fixture(scope="session")
def tiny_window_settings() -> WindowSettings:
    """The same windows as the predictors' settings."""
    return WindowSettings(**WINDOW)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real sample data folder; skips the test when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"real sample data not found at {SHARED}")
    return SHARED
