"""TensorBoard event files of a run, beside its JSON lines, so that a run can be watched as curves.

``tensorboard --logdir RUN`` shows what :mod:`densechange.engine.loop` logs (every training term,
the learning rate, images/s, the per-epoch metrics) plus what the stages add: pictures (validation
triptychs, pseudo-masks), the resolved config as hyper-parameters with the final metrics, and text
(the model card). ``log.jsonl`` and ``metrics.jsonl`` stay the record that scripts read; the event
files mirror them, tag ``GROUP/KEY`` for record key ``KEY``.

Only rank 0 writes: the other processes hold a board without a folder, which does nothing. A
resumed run that continues after step ``S`` appends a new event file to the same folder, opened
with TensorBoard's purge marker at ``S + 1``: readers then drop whatever the interrupted process
logged after its last checkpoint, as the resume drops those records from the JSON lines, so the
curves continue without duplicated steps. Like the JSON lines, event files are appended to, never
replaced; TensorBoard's reader checks each record and skips one torn by a kill.

Example:
    >>> board = RunBoard(Path("runs/demo"))
    >>> board.start(resumed_step=0)
    >>> board.scalars("train", {"loss": 0.5, "lr": 0.01}, step=10)
    >>> board.close()
"""
from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from densechange.engine.errors import ConfigError

__all__ = ["RunBoard", "flat_hparams"]

FLUSH_SECS = 10  # how stale a watched run may look: the writer's thread writes pending events this often


def _number(value: Any) -> float | None:
    """A record's value as a float for a scalar curve; None for text (e.g. ``precision``) and other kinds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def flat_hparams(config: Mapping[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """A nested config as ``{"trainer.optim.lr": 0.01, ...}``: the value kinds TensorBoard's hparams take.

    Lists become their text (``[0.5, 0.5, 0.5]``) and null becomes ``"null"``, so every key of the
    config has a column and runs that differ in a list still differ in the table.
    """
    out: dict[str, bool | int | float | str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_hparams(value, name + "."))
        elif value is None:
            out[name] = "null"
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = str(value)
    return out


class RunBoard:
    """The TensorBoard event stream of one run folder; ``folder=None`` (other ranks, switched off) writes nothing.

    The event file is created on the first write, so a run refused before it trained leaves none.
    ``step`` is where pictures and text go when no step is given: the loop moves it to the step at
    which an epoch ended, so a validation picture lines up with that epoch's metrics.
    """

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.step = 0
        self.resumed_step = 0
        self._writer: Any = None
        if self.folder is not None:
            try:
                import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
            except ImportError:
                raise ConfigError("run.tensorboard=true needs the tensorboard package: pip install tensorboard, or set "
                                  "run.tensorboard=false to keep only the JSON-lines logs.") from None

    @property
    def enabled(self) -> bool:
        return self.folder is not None

    @property
    def moved_on(self) -> bool:
        """Whether this process trained past where the run resumed, so its end-of-run records are new.

        A finished run started again with ``trainer.resume=auto`` trains nothing; its hyper-parameters
        and text are in the event files already, at the same step, and are not written twice.
        """
        return self.step > self.resumed_step or self.resumed_step == 0

    def start(self, resumed_step: int = 0) -> None:
        """Set the step the run continues after (0: a fresh run), before anything is written."""
        self.step = self.resumed_step = int(resumed_step)

    def _open(self) -> Any:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            purge = self.resumed_step + 1 if self.resumed_step > 0 else None
            self._writer = SummaryWriter(str(self.folder), purge_step=purge, flush_secs=FLUSH_SECS)
        return self._writer

    def scalars(self, group: str, record: Mapping[str, Any], step: int | None = None) -> None:
        """Every number of ``record`` as the curve ``GROUP/KEY`` at ``step``; text values are left out."""
        if not self.enabled:
            return
        writer, at = self._open(), self.step if step is None else step
        for key, value in record.items():
            number = _number(value)
            if number is not None:
                writer.add_scalar(f"{group}/{key}", number, at)

    def image(self, tag: str, picture: Image.Image | np.ndarray, step: int | None = None) -> None:
        """An ``(H, W, 3)`` uint8 picture (or a PIL image) under ``tag``."""
        if not self.enabled:
            return
        pixels = np.asarray(picture.convert("RGB") if isinstance(picture, Image.Image) else picture)
        self._open().add_image(tag, pixels, self.step if step is None else step, dataformats="HWC")

    def text(self, tag: str, text: str, step: int | None = None) -> None:
        """Markdown text under ``tag`` (TensorBoard's Text tab renders it)."""
        if self.enabled:
            self._open().add_text(tag, text, self.step if step is None else step)

    def hparams(self, config: Mapping[str, Any]) -> None:
        """The resolved ``config`` as this run's hyper-parameters (a session of TensorBoard's HParams tab).

        The tab shows each session with the last value of every curve of its run as the final
        metrics. No experiment is written here: TensorBoard takes one experiment per folder it is
        pointed at, which a folder of many runs (a comparison grid) writes once, with
        :meth:`experiment`; without one, TensorBoard lists every hyper-parameter and every curve.
        """
        if not self.enabled:
            return
        from torch.utils.tensorboard.summary import hparams

        _, session_start, session_end = hparams(flat_hparams(config), {})
        writer = self._open()
        writer.file_writer.add_summary(session_start, self.step)
        writer.file_writer.add_summary(session_end, self.step)

    def experiment(self, hparams: Mapping[str, Any], metrics: Sequence[tuple[str, str]]) -> None:
        """The columns of TensorBoard's HParams table for every run under this folder (a grid of runs).

        Args:
            hparams: the hyper-parameters shown, each with a value of its kind (text, or a number:
                TensorBoard stores flags and numbers alike).
            metrics: ``(tag, run)`` of each metric: a curve ``tag`` of the run itself (``run=""``) or
                of its sub-run ``run`` (``"test"`` for ``RUN/test/``).
        """
        if not self.enabled:
            return
        from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

        kinds = {name: api_pb2.DATA_TYPE_STRING if isinstance(value, str) else api_pb2.DATA_TYPE_FLOAT64
                 for name, value in hparams.items()}
        experiment = api_pb2.Experiment(
            hparam_infos=[api_pb2.HParamInfo(name=name, type=kind) for name, kind in kinds.items()],
            metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag, group=run)) for tag, run in metrics])
        content = plugin_data_pb2.HParamsPluginData(experiment=experiment, version=metadata.PLUGIN_DATA_VERSION)
        plugin = SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString())
        summary = Summary(value=[Summary.Value(tag=metadata.EXPERIMENT_TAG, metadata=SummaryMetadata(plugin_data=plugin))])
        self._open().file_writer.add_summary(summary, self.step)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
