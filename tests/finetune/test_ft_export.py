"""ONNX export, the ONNX Runtime backend and the QGIS (Deepness) form, on a small model and small rasters.

One module fixture runs every command of the docs' ONNX page (docs/onnx.md) in a folder of its own (a
finetuning run's ``RUN/best.safetensors``, two 96x128 GeoTIFF dates); the tests read what those
commands wrote. Tests that need onnx and onnxruntime skip without them, except the test of the
error a user gets when onnxruntime is missing.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from densechange.checkpoints import CheckpointError, save_encoder

from densechange.models import Encoder
from densechange.checkpoints.format import read_metadata as read_checkpoint_metadata
from densechange.checkpoints.version import code_version
from densechange.datasets import to_float_image
from densechange.engine.commands import dispatch
from densechange.engine.cli import run_cli
from densechange.engine.errors import ConfigError
from densechange.finetune import export, predict
from densechange.finetune.checkpoint import load_change_model, save_change_model
from densechange.finetune.config import ExportConfig
from densechange.finetune.inference.predictor import ChangePredictor
from densechange.finetune.inference.windows import WindowSettings
from densechange.finetune.deepcl.model import ChangeHeadSpec, ChangeModel
from densechange.finetune.onnx.metadata import DEEPNESS_KEYS, TOOLKIT_KEYS, check_deepness, read_metadata, set_metadata
from densechange.finetune.onnx.runtime import OnnxPredictor
from tests.tolerances import ONNX_FP32_ATOL

REPO = Path(__file__).resolve().parents[2]
SECTION = (REPO / "docs" / "onnx.md").read_text()
ONNX_READY = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not ONNX_READY, reason="the onnx extra (onnx, onnxruntime) is not installed")
UTM = rasterio.crs.CRS.from_epsg(32633)
WINDOWS = ["window.size=64", "window.overlap=16", "window.margin=4"]


def write_tif(path: Path, arr: np.ndarray) -> Path:
    """uint8 ``(C, H, W)`` as a GeoTIFF at 0.5 m in UTM 33N."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", height=arr.shape[1], width=arr.shape[2], count=arr.shape[0],
                       dtype="uint8", crs=UTM, transform=from_origin(500000, 4650000, 0.5, 0.5)) as dst:
        dst.write(arr)
    return path


def page_commands() -> list[list[str]]:
    """Every command line of the docs' ONNX page, as argument lists."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", SECTION, re.S):
        lines += [shlex.split(line.split("#")[0]) for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    return lines


def exported_windows(name: str) -> tuple[int, int, int]:
    """Window, overlap and margin of the page command that wrote ``name``: its window keys, else the command's defaults."""
    command = next(c for c in page_commands() if c[:2] == ["densechange", "export"] and f"out={name}" in c)
    given = dict(token.split("=", 1) for token in command[2:] if "=" in token)
    d = ExportConfig().window
    return tuple(int(given.get(f"window.{k}", getattr(d, k))) for k in ("size", "overlap", "margin"))


def small_model() -> ChangeModel:
    torch.manual_seed(0)
    return ChangeModel(Encoder("test_resnet", neck_channels=16), mean=[0.4, 0.45, 0.5], std=[0.2, 0.25, 0.3],
                       heads=ChangeHeadSpec(embed_dim=8, decoder_channels=8)).eval()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A folder in which the ONNX page's commands ran: RUN/best.safetensors, the dates, every output."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    root = tmp_path_factory.mktemp("onnx")
    rng = np.random.default_rng(0)
    for sub in ("A", "B", "label"):  # the run's training data: georeferenced at 0.5 m
        write_tif(root / "cd" / sub / "t0.tif", rng.integers(0, 256, (1 if sub == "label" else 3, 64, 64), np.uint8))
    a = rng.integers(0, 256, (3, 96, 128), np.uint8)
    b = a.copy()
    b[:, 20:70, 30:100] = rng.integers(0, 256, (3, 50, 70), np.uint8)
    write_tif(root / "city_2019.tif", a)
    write_tif(root / "city_2023.tif", b)
    model = small_model()
    with torch.no_grad():  # centre the change logit on this pair, so that its map has both classes
        logits = model(to_float_image(a.transpose(1, 2, 0))[None], to_float_image(b.transpose(1, 2, 0))[None])["logits"]
        model.classifier.bias[1] -= (logits[:, 1] - logits[:, 0]).median()
    config = {"data": {"root": str(root / "cd"), "split": "train"}, "val": {"window": {"size": 64, "overlap": 16, "margin": 4}}}
    save_change_model(root / "RUN" / "best.safetensors", model, config=config)
    commands = page_commands()
    assert commands[0][:2] == ["densechange", "export"]
    # the first, as a user runs it: the suite's one ``densechange export`` in a process of its own (console script)
    done = subprocess.run([str(Path(sys.executable).parent / "densechange"), *commands[0][1:]], cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    cwd = os.getcwd()
    os.chdir(root)
    try:  # the others in this process
        for argv in commands[1:]:
            assert argv[0] == "densechange", argv
            assert dispatch(argv[1:]) == 0, argv
    finally:
        os.chdir(cwd)
    return root


def session(path: Path):
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@needs_onnx
def test_page_commands_wrote_their_files(run):
    commands = [" ".join(c[:2]) for c in page_commands()]
    assert commands.count("densechange export") == 3 and "densechange stack" in commands
    for name in ("model.onnx", "model_stacked.onnx", "change_qgis.onnx", "city_pair.vrt", "change.tif"):
        assert (run / name).is_file(), name
    assert not list(run.glob(".*"))  # every file was renamed into place, no temporary one is left


@pytest.mark.numeric
@needs_onnx
@pytest.mark.parametrize("name, form", [("model.onnx", "pair"), ("model_stacked.onnx", "stacked")])
def test_round_trip_matches_pytorch_at_two_sizes(run, name, form):
    model, _ = load_change_model(run / "RUN" / "best.safetensors")
    sess = session(run / name)
    assert [i.shape for i in sess.get_inputs()] == [["batch", 3 if form == "pair" else 6, "height", "width"]] * (
        2 if form == "pair" else 1)
    g = torch.Generator().manual_seed(1)
    for batch, h, w in ((1, 64, 64), (2, 96, 160)):
        a, b = torch.rand(batch, 3, h, w, generator=g), torch.rand(batch, 3, h, w, generator=g)
        feed = {"a": a.numpy(), "b": b.numpy()} if form == "pair" else {"image": torch.cat([a, b], 1).numpy()}
        logits, distance = sess.run(["logits", "distance"], feed)
        with torch.no_grad():
            expected = model(a, b)
        assert logits.shape == (batch, 2, h, w) and distance.shape == (batch, 1, h // 4, w // 4)
        assert np.abs(logits - expected["logits"].numpy()).max() <= ONNX_FP32_ATOL
        assert np.abs(distance - expected["distance"].numpy()).max() <= ONNX_FP32_ATOL


@needs_onnx
def test_metadata_is_present_and_complete(run):
    import onnx

    ckpt = run / "RUN" / "best.safetensors"
    sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    for name, form, bands in (("model.onnx", "pair", 3), ("model_stacked.onnx", "stacked", 6),
                              ("change_qgis.onnx", "deepness", 6)):
        proto = onnx.load(str(run / name))
        meta = read_metadata(proto)
        assert set(TOOLKIT_KEYS) <= set(meta), sorted(set(TOOLKIT_KEYS) - set(meta))
        assert meta["input_form"] == form and meta["bands"] == 3 and meta["input_bands"] == bands
        assert (meta["window"], meta["overlap"], meta["margin"], meta["stride"]) == (*exported_windows(name), 32)
        assert meta["class_names"] == {"0": "unchanged", "1": "changed"}
        assert meta["mean"] == pytest.approx([0.4, 0.45, 0.5]) and meta["std"] == pytest.approx([0.2, 0.25, 0.3])
        assert meta["toolkit_version"] == code_version() == proto.producer_version and proto.producer_name == "densechange"
        assert meta["source_checkpoint"] == "best.safetensors" and meta["source_sha256"] == sha
        assert meta["checkpoint_metadata"]["model"] == read_checkpoint_metadata(ckpt)["model"]
        assert meta["outputs"] == (["probabilities"] if form == "deepness" else ["logits", "distance"])
        assert [o.name for o in proto.graph.output] == meta["outputs"]
        assert all(json.loads(p.value) is not None for p in proto.metadata_props)  # every value is JSON


@needs_onnx
def test_deepness_keys_are_those_the_plugin_reads(run):
    """The keys, read the way the plugin's model loader reads them, and the graph shape its segmentors need."""
    import onnx

    sess = session(run / "change_qgis.onnx")
    raw = sess.get_modelmeta().custom_metadata_map
    assert str(json.loads(raw["model_type"])).capitalize() == "Segmentor"
    names = json.loads(raw["class_names"])
    assert [names[k] for k in sorted(names, key=int)] == ["unchanged", "changed"]
    tile, overlap, _ = exported_windows("change_qgis.onnx")
    assert int(json.loads(raw["tile_size"])) == tile and int(json.loads(raw["tiles_overlap"])) == round(100 * overlap / tile)
    assert float(json.loads(raw["resolution"])) == pytest.approx(50.0)  # 0.5 m training rasters, in cm/px
    assert not {"standardization_mean", "standardization_std"} & set(raw)  # the graph normalises itself
    assert set(raw) & set(DEEPNESS_KEYS) == {"model_type", "class_names", "tile_size", "tiles_overlap", "resolution"}
    assert [i.shape for i in sess.get_inputs()] == [["batch", 6, tile, tile]]
    assert [o.shape for o in sess.get_outputs()] == [["batch", 2, tile, tile]]
    proto = onnx.load(str(run / "change_qgis.onnx"))
    check_deepness(proto)
    for bad, match in (({"tile_size": "64"}, "'tile_size' is '64'"), ({"tile_size": 128}, r"not \[N, C, 128, 128\]"),
                       ({"standardization_mean": [0.5] * 6}, "normalise a second time"),
                       ({"class_names": {"0": "unchanged", "2": "changed"}}, "not 0..1"),
                       ({"model_type": "Classifier"}, "none of")):
        broken = onnx.ModelProto()
        broken.CopyFrom(proto)
        set_metadata(broken, bad)
        with pytest.raises(CheckpointError, match=match):
            check_deepness(broken)
    with pytest.raises(CheckpointError, match="one input and one output"):
        check_deepness(onnx.load(str(run / "model.onnx")))


@pytest.mark.numeric
@needs_onnx
def test_deepness_model_on_the_stacked_raster_gives_the_change_probabilities(run):
    """What the plugin does with a tile of the stacked layer (uint8 / 255, NCHW) gives the PyTorch model's softmax.

    The tile starts inside the 96x128 layer; what it holds beyond the layer's edge is 0, as the plugin pads it.
    """
    side = exported_windows("change_qgis.onnx")[0]
    window = rasterio.windows.Window(32, 16, side, side)
    with rasterio.open(run / "city_pair.vrt") as src:
        tile = src.read(window=window, boundless=True, fill_value=0)
    assert tile.shape == (6, side, side) and tile.dtype == np.uint8
    probabilities = session(run / "change_qgis.onnx").run(None, {"image": (tile[None] / 255.0).astype(np.float32)})[0]
    model, _ = load_change_model(run / "RUN" / "best.safetensors")
    with rasterio.open(run / "city_2019.tif") as a, rasterio.open(run / "city_2023.tif") as b:
        xa, xb = (to_float_image(r.read(window=window, boundless=True, fill_value=0).transpose(1, 2, 0))[None]
                  for r in (a, b))
    with torch.no_grad():
        expected = torch.softmax(model(xa, xb)["logits"], 1).numpy()
    assert np.abs(probabilities - expected).max() <= ONNX_FP32_ATOL


def _maps(folder: Path) -> dict[str, np.ndarray]:
    return {k: rasterio.open(folder / f"{k}.tif").read(1).astype(int) for k in ("change", "probability", "distance")}


@pytest.mark.numeric
@needs_onnx
def test_predict_with_onnx_equals_predict_with_safetensors(run, tmp_path):
    outputs = {}
    for label, ckpt in (("torch", run / "RUN" / "best.safetensors"), ("pair", run / "model.onnx"),
                        ("stacked", run / "model_stacked.onnx")):
        folder = tmp_path / label
        assert predict.main([f"checkpoint={ckpt}", f"a={run / 'city_2019.tif'}", f"b={run / 'city_2023.tif'}",
                             f"out={folder / 'change.tif'}", f"probability={folder / 'probability.tif'}",
                             f"distance={folder / 'distance.tif'}", *WINDOWS, "device=cpu",
                             "precision=fp32", "progress=false"]) == 0
        outputs[label] = _maps(folder)
    reference = outputs["torch"]
    assert set(np.unique(reference["change"])) == {0, 255}  # both classes: the comparison means something
    for label in ("pair", "stacked"):
        got = outputs[label]
        assert np.abs(got["probability"] - reference["probability"]).max() <= 1  # uint8 rounding of equal floats
        assert np.abs(got["distance"] - reference["distance"]).max() <= 1
        decided = np.abs(reference["probability"] - 127) > 1
        assert np.array_equal(got["change"][decided], reference["change"][decided])


@pytest.mark.numeric
@needs_onnx
def test_onnx_predictor_offers_what_the_streaming_predictor_uses(run):
    model, _ = load_change_model(run / "RUN" / "best.safetensors")
    reference = ChangePredictor(model, WindowSettings(64, 16, 4, 3))
    for name in ("model.onnx", "model_stacked.onnx"):
        onnx_predictor = OnnxPredictor.from_file(run / name, device="cpu", size=64, overlap=16, margin=4, batch_size=3)
        for member in ("windows", "stride", "in_chans", "has_distance"):
            assert getattr(onnx_predictor, member) == getattr(reference, member), member
        g = torch.Generator().manual_seed(2)
        a, b = torch.rand(3, 3, 64, 96, generator=g), torch.rand(3, 3, 64, 96, generator=g)
        got, expected = onnx_predictor.forward_windows(a, b), reference.forward_windows(a, b)
        for key in ("logits", "distance"):
            assert (got[key] - expected[key]).abs().max() <= ONNX_FP32_ATOL


@pytest.mark.numeric
@needs_onnx
def test_a_detector_without_metric_branch_exports_logits_only(tmp_path):
    """siam_diff without the metric branch: logits alone; --resolution goes into the Deepness keys as given."""
    import onnx

    torch.manual_seed(0)
    model = ChangeModel(Encoder("test_resnet", neck_channels=16), mean=[0.5] * 3, std=[0.5] * 3, name="siam_diff",
                        metric_branch=False, heads=ChangeHeadSpec(decoder_channels=8)).eval()
    save_change_model(tmp_path / "plain.safetensors", model)
    done = export.export_checkpoint(tmp_path / "plain.safetensors", tmp_path / "plain.onnx", window=64, overlap=16,
                                    margin=4)
    assert done.form == "pair" and done.max_difference <= ONNX_FP32_ATOL
    predictor = OnnxPredictor.from_file(tmp_path / "plain.onnx", device="cpu", size=64, overlap=16, margin=4)
    assert not predictor.has_distance and predictor.outputs == ["logits"]
    a, b = torch.rand(2, 3, 64, 128), torch.rand(2, 3, 64, 128)
    out = predictor.forward_windows(a, b)
    with torch.no_grad():
        assert out["distance"] is None and (out["logits"] - model(a, b)["logits"]).abs().max() <= ONNX_FP32_ATOL
    done = export.export_checkpoint(tmp_path / "plain.safetensors", tmp_path / "qgis.onnx", form="deepness", window=64,
                                    overlap=16, margin=4, resolution_cm=30)
    assert done.notes == () and read_metadata(onnx.load(str(tmp_path / "qgis.onnx")))["resolution"] == 30


@needs_onnx
def test_predict_refuses_what_it_cannot_run(run, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    with pytest.raises(ConfigError, match="Deepness form"):
        OnnxPredictor.from_file(run / "change_qgis.onnx", device="cpu")
    with pytest.raises(ConfigError, match="float32"):
        OnnxPredictor.from_file(run / "model.onnx", device="cpu", precision="bf16")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    foreign = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]))
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    with pytest.raises(CheckpointError, match="without the toolkit's metadata"):
        OnnxPredictor.from_file(tmp_path / "foreign.onnx", device="cpu")
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="onnxruntime cannot load it"):
        OnnxPredictor.from_file(tmp_path / "broken.onnx", device="cpu")


@needs_onnx
def test_export_refuses_bad_input(run, tmp_path):
    ckpt = run / "RUN" / "best.safetensors"
    with pytest.raises(ConfigError, match="name the exported model .onnx"):
        export.export_checkpoint(ckpt, tmp_path / "model.bin")
    with pytest.raises(ConfigError, match="already an ONNX file"):
        export.export_checkpoint(run / "model.onnx", tmp_path / "again.onnx")
    with pytest.raises(CheckpointError, match="file not found"):
        export.export_checkpoint(tmp_path / "missing.safetensors", tmp_path / "m.onnx")
    save_encoder(tmp_path / "encoder.safetensors", Encoder("test_resnet", neck_channels=8), mean=[0.5] * 3, std=[0.5] * 3)
    with pytest.raises(CheckpointError, match="not a change model"):
        export.export_checkpoint(tmp_path / "encoder.safetensors", tmp_path / "m.onnx")
    with pytest.raises(ConfigError, match="window"):
        export.export_checkpoint(ckpt, tmp_path / "m.onnx", window=50)
    assert not (tmp_path / "m.onnx").exists()


@needs_onnx
def test_an_export_that_fails_verification_writes_nothing(run, tmp_path, monkeypatch):
    monkeypatch.setattr("densechange.finetune.onnx.export.verify", lambda *args: 0.5)
    with pytest.raises(RuntimeError, match="differs from the PyTorch model by 0.5"):
        export.export_checkpoint(run / "RUN" / "best.safetensors", tmp_path / "m.onnx", form="stacked")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_onnxruntime_is_a_clear_error(tmp_path, monkeypatch, capsys):
    """Without onnxruntime, a .onnx checkpoint stops with one line that says how to install it."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    monkeypatch.setitem(sys.modules, "onnx", None)
    for name in ("a.tif", "b.tif"):
        write_tif(tmp_path / name, np.zeros((3, 32, 32), np.uint8))
    (tmp_path / "model.onnx").write_bytes(b"")
    argv = [f"checkpoint={tmp_path / 'model.onnx'}", f"a={tmp_path / 'a.tif'}", f"b={tmp_path / 'b.tif'}",
            f"out={tmp_path / 'change.tif'}"]
    with pytest.raises(SystemExit) as stop:
        run_cli(lambda: predict.main(argv))
    err = " ".join(capsys.readouterr().err.split())  # the message is one wrapped paragraph
    assert stop.value.code == 2 and "Traceback" not in err
    assert "running model.onnx needs the 'onnxruntime' package, which is not installed" in err
    assert "pip install 'densechange[onnx]'" in err
    with pytest.raises(ConfigError, match="exporting to ONNX needs the 'onnx' package"):
        export.export_checkpoint(tmp_path / "best.safetensors", tmp_path / "m.onnx")
    assert not (tmp_path / "change.tif").exists()
