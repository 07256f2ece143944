"""Settings of the whole test session, made before any test module imports torch.

- One intra-op thread per process unless ``OMP_NUM_THREADS`` says otherwise. The suite's networks
  are tiny: on a 2-core CPU with one core busy elsewhere, a second thread gained nothing, and on a
  busier one the threads' synchronisation made small operations many times slower (a 4-step
  pretraining run took 6.6 s instead of 1.4 s). The torchrun tests already give each of their two
  processes one thread; the commands the suite runs in processes of their own inherit the setting.
- torch.compile (the compile tests) caches its kernels in ``TORCHINDUCTOR_CACHE_DIR``, by default a
  folder in the system's temporary directory. When the suite runs from a virtual environment and
  nothing else was asked for, the cache goes inside that environment (``.venv/torchinductor-cache``
  under ``make test``), so that it is reused between runs and removed with the environment.
"""
import os
import sys
from pathlib import Path

ONE_THREAD = "OMP_NUM_THREADS" not in os.environ
if ONE_THREAD:
    os.environ["OMP_NUM_THREADS"] = "1"
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ and sys.prefix != sys.base_prefix:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(sys.prefix) / "torchinductor-cache")

import pytest  # noqa: E402
import torch  # noqa: E402  (after OMP_NUM_THREADS: OpenMP reads it when torch starts)

if ONE_THREAD:
    torch.set_num_threads(1)

# The backbone families both stages are tested over (timm's tiny test models, a small Swin), with the
# overrides each needs; a test that takes ``backbone_family`` runs once per family.
BACKBONE_FAMILIES = {
    "test_resnet": [],
    "test_convnext": [],
    "test_efficientnet": [],
    "test_vit": [],
    "swin_tiny_patch4_window7_224": ["model.backbone_args={embed_dim: 16, depths: [1,1,1,1], num_heads: [1,1,1,1]}"],
}


def _randomise_norms(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Batch-norm statistics and affine terms far from (0, 1), so that a wrong fold shows in the outputs; eval mode."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model.eval()


@pytest.fixture(scope="session")
def randomise_norms():
    """``randomise_norms(model, seed=0)``: see :func:`_randomise_norms`."""
    return _randomise_norms


@pytest.fixture(scope="session")
def backbone_overrides() -> dict[str, list[str]]:
    """The overrides of each backbone family, by name."""
    return {name: list(extra) for name, extra in BACKBONE_FAMILIES.items()}


def pytest_generate_tests(metafunc) -> None:
    if "backbone_family" in metafunc.fixturenames:
        metafunc.parametrize("backbone_family", list(BACKBONE_FAMILIES.items()), ids=list(BACKBONE_FAMILIES))


@pytest.fixture
def cli():
    """``cli(argv) -> exit status`` of ``densechange ARGV`` as a user meets it: toolkit errors become status 2."""
    from densechange.engine.cli import run_cli
    from densechange.engine.commands import dispatch

    def run(argv: list[str]) -> int:
        with pytest.raises(SystemExit) as done:
            run_cli(lambda: dispatch([str(a) for a in argv]))
        return done.value.code or 0

    return run
