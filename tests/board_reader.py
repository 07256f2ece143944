"""Reading a run's TensorBoard event files back with TensorBoard's own reader, for the tests of both stages."""
import io
import math
from pathlib import Path

import numpy as np
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata

from densechange.engine.runlog import read_jsonl

EVENTS = "events.out.tfevents.*"
KEEP_ALL = {"scalars": 0, "images": 0, "tensors": 0}  # 0: every event, not TensorBoard's default sample


def board(folder: Path) -> EventAccumulator:
    """Everything TensorBoard shows of the run in ``folder`` (purged steps dropped, as its reader does)."""
    acc = EventAccumulator(str(folder), size_guidance=KEEP_ALL)
    acc.Reload()
    return acc


def raw_steps(folder: Path, tag: str) -> list[int]:
    """Steps of ``tag`` in every event file of ``folder`` as written, before any purge."""
    steps = []
    for path in sorted(folder.glob(EVENTS)):
        for event in EventFileLoader(str(path)).Load():
            steps += [event.step for v in event.summary.value if v.tag == tag]
    return steps


def as_stored(value: float) -> float:
    """A log value as a TensorBoard scalar holds it (a 32-bit float)."""
    return float(np.float32(value))


def numeric(record: dict) -> dict:
    return {k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and k not in ("step", "epoch")}


def assert_mirrors(acc: EventAccumulator, log: Path, group: str) -> set[str]:
    """Every number of every record of ``log`` is the point (step, value) of the curve ``GROUP/KEY``; returns the tags."""
    records = read_jsonl(log)
    keys = {k for r in records for k in numeric(r)}
    for key in keys:
        expected = [(r["step"], as_stored(r[key])) for r in records if key in r]
        got = [(e.step, e.value) for e in acc.Scalars(f"{group}/{key}")]
        assert [s for s, _ in got] == [s for s, _ in expected], key
        assert all(g == e or (math.isnan(g) and math.isnan(e)) for (_, g), (_, e) in zip(got, expected)), key
    return {f"{group}/{k}" for k in keys}


def picture(event) -> np.ndarray:
    """The pixels of one image event."""
    return np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))


def hparams(acc: EventAccumulator) -> dict:
    """The run's hyper-parameters (name -> value); the run must end its session (no experiment of its own)."""
    content = acc.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    assert set(content) == {hparams_metadata.SESSION_START_INFO_TAG, hparams_metadata.SESSION_END_INFO_TAG}
    start = hparams_metadata.parse_session_start_info_plugin_data(content[hparams_metadata.SESSION_START_INFO_TAG])
    return {k: getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}


def experiment(acc: EventAccumulator) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The HParams table's columns: hyper-parameter name -> kind, and the metrics ``(tag, group)``."""
    content = acc.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    exp = hparams_metadata.parse_experiment_plugin_data(content[hparams_metadata.EXPERIMENT_TAG])
    kinds = {h.name: api_pb2.DataType.Name(h.type) for h in exp.hparam_infos}
    return kinds, [(m.name.tag, m.name.group) for m in exp.metric_infos]


def text(acc: EventAccumulator, tag: str) -> list[str]:
    """Every text written under ``tag`` (TensorBoard stores it as a string tensor)."""
    return [e.tensor_proto.string_val[0].decode() for e in acc.Tensors(f"{tag}/text_summary")]
