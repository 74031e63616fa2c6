"""The generic training loop (noether_rl.training.fit) on a toy state-space Noether Network: non-finite
examples and steps, DDP equivalence over a whole epoch, metrics written exactly once."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import Tensor, nn

from noether_rl.errors import UserError
from noether_rl.noether import NoetherConfig, NoetherNetwork, Prediction
from noether_rl.tailoring import TailorConfig, call_per_example, per_example_params
from noether_rl.training import FitConfig, StepOutput, fit, load_checkpoint
from noether_rl.training.distributed import DistInfo

D, N_WINDOWS, H = 2, 12, 3


class ToyPredictor(nn.Module):
    """x_{t+1} = x_t + 0.1 * tanh(W x_t + b); adaptables: per-example weights."""

    stochastic = False

    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Linear(D, D)

    def adaptables(self, batch_size, horizon, *, kind="weights", device=None, dtype=None):
        return per_example_params(self.f, batch_size)

    def rollout(self, context, actions, horizon, *, adapt=None, generator=None, target=None):
        x, out = context[:, -1], []
        for _ in range(horizon):
            dx = self.f(x) if adapt is None else call_per_example(self.f, adapt, x)
            x = x + 0.1 * torch.tanh(dx)
            out.append(x)
        return Prediction(torch.stack(out, 1))


class Windows:
    """N_WINDOWS windows of 1 + H states; window ``bad`` (if any) is NaN."""

    def __init__(self, bad: int | None = None, n: int = N_WINDOWS) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 1 + H, D, generator=g)
        if bad is not None:
            self.x[bad] = float("nan")

    def __len__(self) -> int:
        return self.x.shape[0]

    def batch(self, idx: Tensor) -> Tensor:
        return self.x[idx]


class Objective(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        g = nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, 4))
        self.net = NoetherNetwork(ToyPredictor(), g, NoetherConfig(tailor=TailorConfig(lr=0.3), adapt="weights"))

    def forward(self, x: Tensor) -> StepOutput:
        out = self.net.predict(x[:, :1], x.new_zeros(x.shape[0], H, 0), H)
        return StepOutput((out.pred - x[:, 1:]).pow(2).sum((1, 2)), out.result.ok)


def _fit(out: Path, data, dist_info: DistInfo = DistInfo(), **kw) -> Path:
    obj = Objective()
    cfg = FitConfig(out=str(out), epochs=kw.pop("epochs", 1), batch_size=4, progress=False, tensorboard=False, **kw)
    return fit(cfg, obj, data, [{"params": list(obj.parameters()), "lr": 1e-2}], device=torch.device("cpu"),
               dist_info=dist_info, run_config={"toy": 1})


def test_one_nan_example_leaves_the_others_meta_gradients_unchanged(tmp_path):
    """A batch with a NaN example trains exactly like the same batch without it."""
    bad = Windows(bad=5)
    obj = Objective()
    with pytest.warns(RuntimeWarning, match="non-finite"):
        o = obj(bad.batch(torch.tensor([4, 5, 6, 7])))
    assert o.ok.tolist() == [True, False, True, True]
    ok = obj(bad.batch(torch.tensor([4, 6, 7])))
    grads = torch.autograd.grad(ok.loss.sum(), list(obj.net.embedding.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)
    # the loop drops the example and recomputes: epoch-level, the NaN run equals a run without it
    ckpt = load_checkpoint(_fit(tmp_path / "nan", bad))
    assert ckpt["log_row"]["dropped_examples"] == 1 and ckpt["log_row"]["skipped_steps"] == 0
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_nonfinite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    path = _fit(tmp_path, Windows(), epochs=1)
    good = load_checkpoint(path)["model"]
    data = Windows()
    data.x[:, 1:] = 1e30  # finite targets whose squared error overflows
    with pytest.raises(UserError, match="non-finite"):
        _fit(tmp_path, data, epochs=2)
    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 1
    for k, v in good.items():
        torch.testing.assert_close(ckpt["model"][k], v)


def test_an_epoch_with_every_step_skipped_is_an_error(tmp_path):
    data = Windows()
    data.x[:] = float("nan")
    with pytest.warns(RuntimeWarning), pytest.raises(UserError, match="every step of epoch 1 was skipped"):
        _fit(tmp_path, data)


def test_metrics_rows_exactly_once_after_kills_and_no_resume(tmp_path):
    path = _fit(tmp_path, Windows(), epochs=1)
    csv_path = tmp_path / "metrics.csv"
    rows = list(csv.DictReader(open(csv_path)))
    # a kill between logging epoch 2 and saving it: the csv has a row the checkpoint does not
    with open(csv_path, "a") as f:
        f.write(",".join(["2"] + ["0"] * (len(rows[0]) - 1)) + "\n")
    (tmp_path / ".last.pt.abc.tmp").write_bytes(b"partial")  # a kill during a save
    _fit(tmp_path, Windows(), epochs=2)
    epochs = [int(r["epoch"]) for r in csv.DictReader(open(csv_path))]
    assert epochs == [1, 2] and not list(tmp_path.glob(".last.pt.*.tmp"))
    # a kill between saving and logging: the row is restored from the checkpoint
    rows = list(csv.DictReader(open(csv_path)))
    csv_path.write_text(",".join(rows[0]) + "\n" + ",".join(rows[0].values()) + "\n")
    _fit(tmp_path, Windows(), epochs=2)
    assert [int(r["epoch"]) for r in csv.DictReader(open(csv_path))] == [1, 2]
    # --no-resume removes the old run before anything else
    _fit(tmp_path, Windows(), epochs=1, resume=False)
    assert load_checkpoint(path)["epoch"] == 1
    assert [int(r["epoch"]) for r in csv.DictReader(open(csv_path))] == [1]


def test_resume_refuses_another_configuration(tmp_path):
    _fit(tmp_path, Windows())
    obj = Objective()
    cfg = FitConfig(out=str(tmp_path), epochs=2, batch_size=4, progress=False, tensorboard=False)
    with pytest.raises(UserError, match="different configuration"):
        fit(cfg, obj, Windows(), [{"params": list(obj.parameters()), "lr": 1e-2}], device=torch.device("cpu"),
            run_config={"toy": 2})


def _ddp_worker(rank: int, world: int, init_file: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            _fit(Path(out), Windows(bad=1, n=4), DistInfo(rank=rank, world_size=world), epochs=1)
    finally:
        dist.destroy_process_group()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_ddp_two_gloo_processes_whole_epoch_with_a_nan_example_equal_one_process(tmp_path):
    """One epoch (one global batch of 4, one of them NaN) on 2 gloo ranks equals one process. Adam's first
    update is ~lr*sign(g), ill-conditioned where g ~ 0, so the comparison is on Adam's first moment (linear in
    the gradient) and the weights."""
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "ddp")), nprocs=2, join=True)
    ddp = load_checkpoint(tmp_path / "ddp" / "last.pt")
    single = load_checkpoint(_fit(tmp_path / "single", Windows(bad=1, n=4)))
    assert single["log_row"]["dropped_examples"] == 1 and ddp["step"] == single["step"] == 1
    for k, st in single["optimizer"]["state"].items():
        torch.testing.assert_close(ddp["optimizer"]["state"][k]["exp_avg"], st["exp_avg"], rtol=1e-4, atol=1e-8)
    for k, v in single["model"].items():
        assert torch.isfinite(ddp["model"][k]).all() and torch.isfinite(v).all()
