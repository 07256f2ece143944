"""Schedules, the sharded sampler and the resumable state, checked by value."""
import math

import pytest
import torch
from torch import nn

from densechange.engine.data import ShardedSampler
from densechange.engine.schedule import lr_at
from densechange.engine.seeding import derive_seed, step_generator
from densechange.engine.state import LoopState, load_state, save_state


def test_poly_cosine_constant_values():
    assert lr_at(0, 100, 0.01) == pytest.approx(0.01)
    assert lr_at(50, 100, 0.01, "poly", 0.9) == pytest.approx(0.01 * 0.5**0.9)
    assert lr_at(100, 100, 0.01) == pytest.approx(0.0)
    assert lr_at(50, 100, 1.0, "cosine") == pytest.approx(0.5)
    assert lr_at(25, 100, 1.0, "cosine", min_lr=0.2) == pytest.approx(0.2 + 0.4 * (1 + math.cos(math.pi / 4)))
    assert lr_at(70, 100, 0.3, "constant") == 0.3
    assert lr_at(4, 100, 1.0, "poly", warmup=10) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="poly, cosine, constant"):
        lr_at(0, 10, 1.0, "step")


def test_sampler_shards_are_disjoint_and_cover_whole_batches():
    n, world, bs = 103, 3, 4
    shards = [ShardedSampler(n, r, world, bs, seed=5) for r in range(world)]
    for e in range(3):
        idx = []
        for s in shards:
            s.set_epoch(e)
            got = list(s)
            assert len(got) == len(s) == (n // world // bs) * bs
            idx += got
        assert len(set(idx)) == len(idx)
    a, b = ShardedSampler(n, 0, 1, bs, seed=5), ShardedSampler(n, 0, 1, bs, seed=5)
    a.set_epoch(0)
    b.set_epoch(1)
    assert list(a) != list(b)


def test_sampler_start_offset_continues_the_epoch():
    s = ShardedSampler(40, 1, 2, 3, seed=1)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, start_batch=2)
    assert list(s) == full[6:]


def test_seeds_differ_by_rank_and_step():
    draws = {(r, t): torch.rand(3, generator=step_generator(0, r, t)) for r in range(2) for t in range(2)}
    assert not torch.equal(draws[0, 0], draws[1, 0]) and not torch.equal(draws[0, 0], draws[0, 1])
    assert torch.equal(draws[0, 1], torch.rand(3, generator=step_generator(0, 0, 1)))
    assert derive_seed(1, 2) == derive_seed(1, 2) != derive_seed(2, 1)


@pytest.mark.parametrize("opt_name", ["sgd", "adamw"])
def test_state_round_trip_is_exact(tmp_path, opt_name):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9) if opt_name == "sgd" else torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(3):
        model(torch.randn(5, 4)).square().mean().backward()
        opt.step()
        opt.zero_grad()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    loop = LoopState(step=3, epoch=1, step_in_epoch=1, best_metric=0.5, best_epoch=0, history=[{"epoch": 0, "f1": 0.5}])
    save_state(tmp_path / "last.safetensors", model, opt, scaler, loop, {"a": 1})

    torch.manual_seed(1)
    model2 = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9) if opt_name == "sgd" else torch.optim.AdamW(model2.parameters(), lr=1e-3)
    loop2 = load_state(tmp_path / "last.safetensors", model2, opt2, scaler)
    assert loop2 == loop
    for k, v in model.state_dict().items():
        assert torch.equal(v, model2.state_dict()[k]), k
    # one more identical step on both gives identical weights
    x = torch.randn(5, 4)
    for m, o in ((model, opt), (model2, opt2)):
        m(x).square().mean().backward()
        o.step()
    for k, v in model.state_dict().items():
        assert torch.equal(v, model2.state_dict()[k]), k


def test_trainer_settings_are_validated():
    from types import SimpleNamespace

    from densechange.engine.errors import ConfigError
    from densechange.engine.loop import validate_trainer

    good = dict(epochs=1, batch_size=2, accumulate=1, log_every=1, max_steps=None, save_every=0, num_workers=0, sync_bn=False)
    validate_trainer(SimpleNamespace(**good), torch.device("cpu"))
    for key, value, match in [
        ("batch_size", 0, "trainer.batch_size=0"),
        ("accumulate", 0, "trainer.accumulate=0"),
        ("max_steps", 0, "trainer.max_steps=0"),
        ("sync_bn", True, "sync_bn"),
    ]:
        with pytest.raises(ConfigError, match=match):
            validate_trainer(SimpleNamespace(**{**good, key: value}), torch.device("cpu"))


def test_truncate_jsonl_drops_undone_steps(tmp_path):
    from densechange.engine.runlog import JsonlLog, read_jsonl, truncate_jsonl

    log = JsonlLog(tmp_path / "log.jsonl")
    for s in range(1, 6):
        log.write({"step": s, "loss": float("nan") if s == 5 else 1.0 / s})
    log.close()
    truncate_jsonl(tmp_path / "log.jsonl", "step", 3)
    assert [r["step"] for r in read_jsonl(tmp_path / "log.jsonl")] == [1, 2, 3]


def test_truncate_jsonl_drops_a_record_torn_by_a_kill(tmp_path):
    from densechange.engine.runlog import read_jsonl, truncate_jsonl

    path = tmp_path / "log.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')  # SIGKILL in the middle of a write
    with pytest.raises(ValueError):
        read_jsonl(path)
    assert [r["step"] for r in read_jsonl(path, torn_tail=True)] == [1, 2]
    truncate_jsonl(path, "step", 2)
    assert [r["step"] for r in read_jsonl(path)] == [1, 2]
    path.write_text('{"step": 1}\n{"st\n{"step": 3}\n')  # only the last line may be torn
    with pytest.raises(ValueError):
        truncate_jsonl(path, "step", 3)


class _EpochEcho(torch.utils.data.Dataset):
    """Returns the epoch it was set to, the index, and the process that loaded it."""

    def __init__(self, n: int) -> None:
        self.n, self.epoch = n, -1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        import os

        return {"epoch": self.epoch, "index": i, "pid": os.getpid()}


def test_loader_workers_persist_and_learn_the_epoch_from_the_sampler():
    from densechange.engine.data import make_loader

    sampler = ShardedSampler(12, 0, 1, 4, seed=3)
    loader = make_loader(_EpochEcho(12), sampler, num_workers=1, pin_memory=False)
    seen = {}
    for epoch in (0, 1, 2):
        sampler.set_epoch(epoch, start_batch=1 if epoch == 2 else 0)
        batches = list(loader)
        seen[epoch] = batches
        assert all((b["epoch"] == epoch).all() for b in batches)
        assert torch.cat([b["index"] for b in batches]).tolist() == list(sampler)
    pids = {int(b["pid"][0]) for batches in seen.values() for b in batches}
    assert len(pids) == 1  # one worker process served all three epochs
    refreshed = _EpochEcho(12)
    refreshed.refreshed_between_epochs = True
    assert not make_loader(refreshed, sampler, num_workers=1, pin_memory=False).persistent_workers
