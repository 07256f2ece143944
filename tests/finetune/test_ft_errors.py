"""Bad input gives one paragraph that names the problem, through run_cli, and exit status 2."""
import numpy as np
import pytest
import torch

from densechange.checkpoints import save_encoder

from densechange.models import Encoder
from densechange.datasets.io.images import write_image
from densechange.engine.cli import run_cli
from densechange.finetune import evaluate, predict, train
from densechange.finetune.checkpoint import save_change_model
from densechange.finetune.deepcl.model import ChangeHeadSpec, ChangeModel


def user_error(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: main(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and "\n\n" not in err.strip()
    return " ".join(err.split())


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    model = ChangeModel(Encoder("test_resnet", neck_channels=8), mean=[0.5] * 3, std=[0.5] * 3, metric_branch=False,
                        heads=ChangeHeadSpec(embed_dim=4, decoder_channels=4))
    save_change_model(path, model)
    return path


def test_training_config_errors(tiny_overrides, capsys, tmp_path):
    run = f"run.dir={tmp_path / 'run'}"
    msg = user_error(train.main, ["data.root=synthetic", "model.encodr=random", run], capsys)
    assert "unknown config key 'model.encodr'" in msg and "model.encoder" in msg
    msg = user_error(train.main, ["model.encoder=random", run], capsys)
    assert "'data.root' is required" in msg
    msg = user_error(train.main, ["data.root=synthetic", "model.name=unet", run], capsys)
    assert "model.name" in msg and "deepcl, siam_diff" in msg
    msg = user_error(train.main, ["data.root=synthetic", "model.prior=gate", run], capsys)
    assert "model.prior" in msg and "attention, concat, none" in msg
    missing = tmp_path / "nowhere"
    msg = user_error(train.main, [f"data.root={missing}", "model.encoder=random", run], capsys)
    assert str(missing) in msg and "not found" in msg
    msg = user_error(train.main, [*tiny_overrides, "val.window.size=50", run], capsys)
    assert "window size 50" in msg and "multiple of 32" in msg
    msg = user_error(train.main, [*tiny_overrides, f"model.encoder={tmp_path / 'enc.safetensors'}", run], capsys)
    assert "enc.safetensors" in msg
    msg = user_error(train.main, [*tiny_overrides, "data.mean=[0.5]", run], capsys)
    assert "data.mean" in msg and "data.in_chans=3" in msg


def test_band_count_of_the_data_must_match_the_config(tiny_overrides, capsys, tmp_path):
    msg = user_error(train.main, [*tiny_overrides, "data.in_chans=4", f"run.dir={tmp_path / 'run'}"], capsys)
    assert "3 bands" in msg and "data.in_chans=4" in msg


def test_predict_errors(checkpoint, capsys, tmp_path):
    rng = np.random.default_rng(0)
    write_image(tmp_path / "a.png", (rng.random((64, 64, 3)) * 255).astype(np.uint8))
    write_image(tmp_path / "b.png", (rng.random((64, 80, 3)) * 255).astype(np.uint8))
    write_image(tmp_path / "rgba.png", (rng.random((64, 64, 4)) * 255).astype(np.uint8))
    base = [f"checkpoint={checkpoint}", "device=cpu", f"out={tmp_path / 'out.png'}"]
    msg = user_error(predict.main, [*base, f"a={tmp_path / 'a.png'}", f"b={tmp_path / 'b.png'}"], capsys)
    assert "a.png is 64x64" in msg and "b.png is 64x80" in msg
    msg = user_error(predict.main, [*base, f"a={tmp_path / 'rgba.png'}", f"b={tmp_path / 'rgba.png'}"], capsys)
    assert "4 bands" in msg and "trained on 3" in msg
    msg = user_error(predict.main, [*base, f"a={tmp_path / 'a.png'}", f"b={tmp_path / 'a.png'}",
                                    f"distance={tmp_path / 'd.png'}"], capsys)
    assert "metric_branch=false" in msg
    msg = user_error(predict.main, [*base, f"a={tmp_path / 'a.png'}", f"b={tmp_path}"], capsys)
    assert "two image files or two folders" in msg
    msg = user_error(predict.main, [f"checkpoint={tmp_path / 'none.safetensors'}", f"a={tmp_path / 'a.png'}",
                                    f"b={tmp_path / 'a.png'}", f"out={tmp_path / 'o.png'}"], capsys)
    assert "none.safetensors" in msg
    msg = user_error(predict.main, [*base[:4], f"out={tmp_path / 'o.jpg'}", f"a={tmp_path / 'a.png'}",
                                    f"b={tmp_path / 'a.png'}"], capsys)
    assert "o.jpg" in msg and ".png, .tif or .tiff" in msg
    msg = user_error(predict.main, [*base, f"a={tmp_path / 'a.png'}", f"b={tmp_path / 'a.png'}",
                                    "window.size=100"], capsys)
    assert "window size 100" in msg


def test_evaluate_errors(checkpoint, capsys, tmp_path):
    encoder = tmp_path / "encoder.safetensors"
    save_encoder(encoder, Encoder("test_resnet", neck_channels=8), mean=[0.5] * 3, std=[0.5] * 3)
    msg = user_error(evaluate.main, [f"checkpoint={encoder}", "data.root=synthetic", "data.synthetic_size=64"], capsys)
    assert "not a change model" in msg
    msg = user_error(evaluate.main, [f"checkpoint={checkpoint}"], capsys)
    assert "'data.root' is required" in msg
    msg = user_error(evaluate.main, [f"checkpoint={checkpoint}", "data.root=synthetic", "data.split=holdout"], capsys)
    assert "holdout" in msg and "train, val, test" in msg
    msg = user_error(evaluate.main, [f"checkpoint={checkpoint}", "data.root=synthetic", "window.sise=64"], capsys)
    assert "window.sise" in msg and "window.size" in msg
