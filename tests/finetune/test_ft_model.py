"""Change models: shapes, the distance prior, the one-switch ablation, encoders and checkpoints."""
import pytest
import torch
from omegaconf import OmegaConf

from densechange.checkpoints import CheckpointError, load_encoder, save_encoder

from densechange.models import Encoder
from densechange.checkpoints.format import load_file
from densechange.engine.config import load_config
from densechange.finetune.checkpoint import load_change_model, save_change_model
from densechange.finetune.config import FinetuneConfig, ModelConfig
from densechange.finetune.deepcl.model import ChangeModel, build_change_model
from densechange.finetune.deepcl.prior import apply_prior, resize_distance
from densechange.finetune.train import build_task


def small_cfg(**kw):
    base = dict(encoder="random", backbone="test_resnet", neck_channels=16, embed_dim=8, decoder_channels=8)
    return OmegaConf.structured(ModelConfig(**{**base, **kw}))


def images(n=2, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g), torch.rand(n, 3, size, size, generator=g)


@pytest.mark.parametrize("name", ["deepcl", "siam_diff"])
@pytest.mark.parametrize("prior", ["attention", "concat", "none"])
def test_shapes_for_every_detector_and_prior(name, prior):
    torch.manual_seed(0)
    model = build_change_model(small_cfg(name=name, prior=prior)).eval()
    a, b = images(size=96)
    with torch.no_grad():
        out = model(a, b)
    assert out["logits"].shape == (2, 2, 96, 96)
    assert out["distance"].shape == (2, 1, 24, 24)
    assert out["distance"].min() >= 0 and out["distance"].max() <= 2 + 1e-5  # unit embeddings


def test_metric_branch_is_one_switch():
    torch.manual_seed(0)
    plain = build_change_model(small_cfg(name="siam_diff", metric_branch=False, prior="concat"))
    assert plain.metric_head is None and plain.prior == "none"
    assert not any(k.startswith("metric_head.") for k in plain.state_dict())
    out = plain(*images())
    assert out["distance"] is None and out["logits"].shape == (2, 2, 64, 64)


def test_distance_is_symmetric_and_zero_for_identical_dates():
    torch.manual_seed(0)
    model = build_change_model(small_cfg()).eval()
    a, b = images()
    with torch.no_grad():
        assert torch.allclose(model(a, b)["distance"], model(b, a)["distance"], atol=1e-6)
        assert model(a, a)["distance"].abs().max() < 1e-6


def test_prior_hand_values():
    f = torch.ones(1, 2, 2, 2)
    d = torch.tensor([[0.0, 1.0], [2.0, 0.5]]).view(1, 1, 2, 2)
    assert apply_prior(f, d, "attention")[0, 0].tolist() == [[1.0, 1.5], [2.0, 1.25]]
    cat = apply_prior(f, d, "concat")
    assert cat.shape == (1, 3, 2, 2) and torch.equal(cat[:, 2:], d)
    assert apply_prior(f, d, "none") is f
    # the distance map is area-averaged to coarser levels
    coarse = resize_distance(d, (1, 1))
    assert coarse.item() == pytest.approx(3.5 / 4)
    with pytest.raises(ValueError, match="valid values"):
        apply_prior(f, d, "gate")


def test_pooling_by_the_stride_ratio_is_the_area_average():
    """The fixed-kernel path (exportable to ONNX) gives the adaptive pooling's numbers; a ratio that does not fit is ignored."""
    d = torch.rand(2, 1, 16, 24, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(resize_distance(d, (4, 6), ratio=4), torch.nn.functional.adaptive_avg_pool2d(d, (4, 6)), atol=1e-7)
    assert torch.equal(resize_distance(d, (5, 7), ratio=4), torch.nn.functional.adaptive_avg_pool2d(d, (5, 7)))
    model = ChangeModel(Encoder("test_resnet", neck_channels=8), mean=[0.5] * 3, std=[0.5] * 3)
    assert model.decoder.ratios == (1, 2, 4, 8)


def test_unknown_model_name_and_bad_normalisation():
    with pytest.raises(ValueError, match="deepcl, siam_diff"):
        ChangeModel(Encoder("test_resnet", neck_channels=8), mean=[0.5] * 3, std=[0.5] * 3, name="unet")
    with pytest.raises(ValueError, match="one value per band"):
        ChangeModel(Encoder("test_resnet", neck_channels=8), mean=[0.5], std=[0.5])


def test_pretrained_encoder_weights_are_loaded(tmp_path):
    torch.manual_seed(3)
    pretrained = Encoder("test_resnet", neck_channels=16)
    with torch.no_grad():
        for p in pretrained.parameters():
            p.add_(torch.randn_like(p))  # far from any fresh initialisation
    path = tmp_path / "encoder.safetensors"
    save_encoder(path, pretrained, mean=[0.1, 0.2, 0.3], std=[0.4, 0.5, 0.6])
    torch.manual_seed(0)
    cfg = load_config(FinetuneConfig, None, ["data.root=synthetic", f"model.encoder={path}", "model.embed_dim=8"])
    model = build_task(cfg).model  # the training run's wiring; the file's neck width (16) wins over 256
    got, want = model.encoder.state_dict(), pretrained.state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)
    norm = model.normalisation()
    assert norm["mean"] == pytest.approx([0.1, 0.2, 0.3]) and norm["std"] == pytest.approx([0.4, 0.5, 0.6])
    # config values override the file's normalisation
    model = build_change_model(small_cfg(encoder=str(path)), mean=[0.5] * 3, std=[0.25] * 3)
    assert model.normalisation() == {"mean": [0.5] * 3, "std": [0.25] * 3}


def test_checkpoint_round_trip_is_bit_exact(tmp_path):
    torch.manual_seed(0)
    model = build_change_model(small_cfg(name="deepcl", prior="concat"), mean=[0.4] * 3, std=[0.2] * 3)
    model.train()
    model(*images(seed=5))  # move BatchNorm running statistics away from their initial values
    model.eval()
    path = tmp_path / "best.safetensors"
    save_change_model(path, model, config={"run": {"seed": 0}}, extra={"epoch": 7})
    loaded, meta = load_change_model(path)
    tensors, _ = load_file(path)
    assert tensors.keys() == model.state_dict().keys()
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    assert meta["kind"] == "change-model" and meta["epoch"] == 7 and meta["model"]["prior"] == "concat"
    assert meta["encoder"]["backbone"] == "test_resnet" and meta["mean"] == pytest.approx([0.4] * 3)
    a, b = images(seed=6)
    with torch.no_grad():
        want, got = model(a, b), loaded(a, b)
    assert torch.equal(want["logits"], got["logits"]) and torch.equal(want["distance"], got["distance"])
    # the finetuned encoder can be taken out of a change model by the checkpoints package
    encoder = load_encoder(path)
    assert all(torch.equal(v, model.encoder.state_dict()[k]) for k, v in encoder.state_dict().items())


def test_encoder_file_is_not_a_change_model(tmp_path):
    path = tmp_path / "encoder.safetensors"
    save_encoder(path, Encoder("test_resnet", neck_channels=8), mean=[0.5] * 3, std=[0.5] * 3)
    with pytest.raises(CheckpointError, match="not a change model"):
        load_change_model(path)
