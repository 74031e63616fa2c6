"""Faults: interrupted and resumed recordings, path spellings, full disks, umask, non-finite data and actions.

Each test ends with a result identical to an uninterrupted run, or a clear one-line refusal that keeps the
user's data.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from noether_rl.cli.main import main
from noether_rl.data import MANIFEST, load_manifest, open_episode, shard_name, verify_recording, write_npz
from noether_rl.errors import DataError, UserError
from noether_rl.recorders import RecordConfig, record
from noether_rl.training import TrainConfig
from noether_rl.training.checkpoint import load_checkpoint, load_weights, save_checkpoint
from noether_rl.utils.io import (
    atomic_open,
    atomic_output_path,
    atomic_write_bytes,
    atomic_write_json,
    current_umask,
)

EPISODES, STEPS, SIZE = 3, 6, 32


def tiny(out: Path, **kw: Any) -> RecordConfig:
    """The recording `reproduce pendulum-video` makes, at a tiny size (swingup, seed 0, 32x32)."""
    base: dict[str, Any] = dict(env_id="noether_rl/PixelPendulum-v0", policy="swingup", episodes=EPISODES,
                                steps=STEPS, size=SIZE, seed=0, out=out, num_envs=1, preview=False, progress=False)
    return RecordConfig(**{**base, **kw})


def tree(root: Path, pattern: str = "*") -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.glob(pattern)) if p.is_file()}


def data_files(root: Path) -> dict[str, bytes]:
    """Shards and manifest (what defines a recording; previews are extra)."""
    return {k: v for k, v in tree(root).items() if k == MANIFEST or k.startswith("episode_")}


def interrupt(root: Path, missing: int = 2) -> None:
    """What a kill -9 during `record` leaves: a config-only manifest, a shard missing, a stray temp file."""
    m = json.loads((root / MANIFEST).read_text())
    (root / MANIFEST).write_text(json.dumps({**m, "complete": False, "shards": []}))
    (root / shard_name(missing)).unlink()
    (root / f".{shard_name(missing)}.k1ll3d.tmp").write_bytes(b"half a zip")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("ref") / "rec"
    record(tiny(out))
    return data_files(out)


@pytest.fixture()
def umask() -> Iterator[Any]:
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "%|" not in ln]  # drop progress bars
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0]


# --------------------------------------------------------------------------------- interrupted recording
def test_reproduce_finishes_an_interrupted_recording(tmp_path: Path, reference: dict[str, bytes]) -> None:
    from noether_rl.experiments.pendulum_video import PendulumVideoConfig, _recording

    data = tmp_path / "D"
    record(tiny(data))
    interrupt(data)
    with pytest.raises(DataError, match="this recording is incomplete: rerun the same record command"):
        verify_recording(data)
    with pytest.raises(DataError, match="this recording is incomplete"):
        load_manifest(data)  # every reader (train, evaluate, ...) starts here
    assert load_manifest(data, require_complete=False)["shards"] == []
    cfg = PendulumVideoConfig(out=str(tmp_path / "run"), data=str(data), episodes=EPISODES, steps=STEPS,
                              train_episodes=1, progress=False)
    assert cfg.spec.size == SIZE
    assert _recording(cfg, cfg.spec) == data
    assert data_files(data) == reference
    assert not list(data.glob(".*.tmp"))
    verify_recording(data)
    assert _recording(cfg, cfg.spec) == data  # complete now: reused as is
    assert data_files(data) == reference


def test_reproduce_refuses_an_interrupted_recording_of_another_config(tmp_path: Path) -> None:
    from noether_rl.experiments.pendulum_video import PendulumVideoConfig, _recording

    data = tmp_path / "D"
    record(tiny(data, policy="random"))
    interrupt(data)
    before = tree(data, ".*") | tree(data)
    cfg = PendulumVideoConfig(out=str(tmp_path / "run"), data=str(data), episodes=EPISODES, steps=STEPS,
                              train_episodes=1, progress=False)
    with pytest.raises(UserError, match="this recording is incomplete: rerun the same record command"):
        _recording(cfg, cfg.spec)
    assert tree(data, ".*") | tree(data) == before  # the user's data is kept as it was


def test_train_on_an_interrupted_recording_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "D"
    record(tiny(data))
    interrupt(data)
    rc = main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--device", "cpu",
               "--n-past", "2", "--n-future", "2", "--train-episodes", "1"])
    assert rc == 2
    assert "this recording is incomplete: rerun the same record command to finish it" in one_line(capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("spelling", ["absolute/", "./rec", "rec/", "link"])
def test_record_resume_does_not_depend_on_path_spelling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], spelling: str,
    reference: dict[str, bytes],
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["record", "--policy", "swingup", "--episodes", str(EPISODES), "--steps", str(STEPS), "--size", str(SIZE),
            "--seed", "0", "--no-progress"]
    assert main([*args, "--out", "rec"]) == 0
    interrupt(tmp_path / "rec")
    (tmp_path / "link").symlink_to(tmp_path / "rec")
    out = f"{tmp_path}/rec/" if spelling == "absolute/" else spelling
    assert main([*args, "--out", out]) == 0, capsys.readouterr().err
    assert data_files(tmp_path / "rec") == reference
    assert main([*args, "--out", str(tmp_path / "rec")]) == 0  # and once more: a no-op
    assert data_files(tmp_path / "rec") == reference


# ------------------------------------------------------------------------------------------- full disk
def test_full_disk_during_record_is_one_line_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    reference: dict[str, bytes],
) -> None:
    out = tmp_path / "rec"
    args = ["record", "--episodes", str(EPISODES), "--steps", str(STEPS), "--size", str(SIZE), "--seed", "0",
            "--no-progress", "--out", str(out)]
    real, calls = os.fsync, []

    def fsync(fd: int) -> None:  # the disk fills up while the second shard is written
        calls.append(fd)
        if len(calls) >= 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert main(args) == 2
    monkeypatch.undo()
    line = one_line(capsys)
    assert "No space left on device" in line and "rerun the same command" in line
    assert not list(out.glob(".*")), "temp files left behind"
    assert (out / shard_name(0)).is_file() and not (out / shard_name(1)).exists()
    with pytest.raises(DataError, match="incomplete"):
        verify_recording(out)
    assert main(args) == 0
    assert data_files(out) == reference


def test_full_disk_during_checkpoint_save(
    tiny_recording: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = ["train", "--data", str(tiny_recording), "--out", str(out), "--device", "cpu", "--n-past", "3",
            "--n-future", "4", "--train-episodes", "2", "--width", "8", "--g-dim", "8", "--rnn-size", "16",
            "--rnn-layers", "1", "--norm", "layer", "--batch-size", "4", "--stride", "4", "--epochs", "1"]

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    assert main(args) == 2
    monkeypatch.undo()
    err = capsys.readouterr().err  # progress bars, then one error line
    assert err.count("noether-rl") == 1 and "Traceback" not in err, err
    assert err.splitlines()[-1].startswith("noether-rl train: error: No space left on device"), err
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
    assert not (out / "last.pt").exists()
    assert main(args) == 0  # space freed: the same command finishes
    load_checkpoint(out / "last.pt")


# ---------------------------------------------------------------------------------------------- umask
@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_respect_the_umask(tmp_path: Path, umask: Any, mask: int, mode: int) -> None:
    umask(mask)
    assert current_umask() == mask
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    atomic_write_bytes(tmp_path / "b.bin", b"x")
    with atomic_open(tmp_path / "c.txt", "w") as f:
        f.write("x")
    with atomic_output_path(tmp_path / "d.png") as tmp:
        tmp.write_bytes(b"png")
    save_checkpoint(tmp_path / "e.pt", {"config": {}, "model": {"w": torch.zeros(2)}})
    record(tiny(tmp_path / "rec", episodes=1, steps=2))
    files = [tmp_path / n for n in ("a.json", "b.bin", "c.txt", "d.png", "e.pt")]
    files += [tmp_path / "rec" / MANIFEST, tmp_path / "rec" / shard_name(0)]
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == mode, p


def test_failed_atomic_write_leaves_no_new_directories(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_open(tmp_path / "a" / "b" / "f.json", "w") as f:
        f.write("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "keep").mkdir()
    with pytest.raises(RuntimeError), atomic_output_path(tmp_path / "keep" / "new" / "x.png"):
        raise RuntimeError("killed")
    assert [p.name for p in tmp_path.rglob("*")] == ["keep"]


# ---------------------------------------------------------------------------------- non-finite data
def _rewrite(root: Path, i: int, arrays: dict[str, np.ndarray]) -> None:
    """Overwrite shard ``i`` and fix the manifest's hash and size (as a hand edit would)."""
    path = root / shard_name(i)
    with open(path, "wb") as f:
        write_npz(f, arrays)
    m = json.loads((root / MANIFEST).read_text())
    m["shards"][i].update(sha256=hashlib.sha256(path.read_bytes()).hexdigest(), bytes=path.stat().st_size)
    (root / MANIFEST).write_text(json.dumps(m))


@pytest.mark.parametrize(("key", "value"), [("actions", np.nan), ("actions", np.inf), ("rewards", -np.inf),
                                            ("states", np.nan)])
def test_non_finite_data_is_refused_naming_the_shard(tmp_path: Path, key: str, value: float) -> None:
    root = tmp_path / "rec"
    record(tiny(root))
    ep = open_episode(root, 1)
    ep[key][2] = value
    _rewrite(root, 1, ep)
    msg = rf"episode_00001\.npz: {key} hold non-finite values \(first at step 2\)"
    with pytest.raises(DataError, match=msg):
        verify_recording(root)
    with pytest.raises(DataError, match=msg):
        open_episode(root, 1, check_hash=False)
    open_episode(root, 0)  # the other shards still read


def test_mixed_action_sizes_are_refused_naming_the_shard(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    record(tiny(root))
    ep = open_episode(root, 2)
    ep["actions"] = np.repeat(ep["actions"], 3, axis=1)
    _rewrite(root, 2, ep)
    with pytest.raises(DataError, match=r"episode_00002\.npz: actions of size 3, but the recording's other"):
        verify_recording(root)
    m = json.loads((root / MANIFEST).read_text())  # an older manifest without action_dim: shard 0 decides
    del m["action_dim"]
    (root / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(DataError, match=r"episode_00002\.npz: actions of size 3"):
        verify_recording(root)


@pytest.mark.parametrize("manifest_bytes", ["zero", "absent"])
def test_rerun_of_record_replaces_a_zero_byte_shard_whose_hash_matches(
    tmp_path: Path, reference: dict[str, bytes], manifest_bytes: str
) -> None:
    root = tmp_path / "rec"
    record(tiny(root))
    (root / shard_name(1)).write_bytes(b"")
    m = json.loads((root / MANIFEST).read_text())
    m["shards"][1]["sha256"] = hashlib.sha256(b"").hexdigest()
    if manifest_bytes == "zero":
        m["shards"][1]["bytes"] = 0
    else:
        del m["shards"][1]["bytes"]
    (root / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(DataError, match=r"episode_00001\.npz"):
        verify_recording(root)
    record(tiny(root))
    assert data_files(root) == reference
    verify_recording(root)


# ------------------------------------------------------------------------------------ pixel pendulum
@pytest.mark.parametrize("action", [None, np.array([np.nan], np.float32), np.array([np.inf]), -math.inf,
                                    "push", np.array([0.1, 0.2])])
def test_pixel_pendulum_rejects_bad_actions_before_touching_the_state(action: Any) -> None:
    import noether_rl.envs  # noqa: F401  (registers the env)

    env = gym.make("noether_rl/PixelPendulum-v0", size=16)
    obs, info = env.reset(seed=3)
    state = np.array(env.unwrapped.state, copy=True)
    with pytest.raises(ValueError, match="PixelPendulum-v0: action"):
        env.step(action)
    np.testing.assert_array_equal(env.unwrapped.state, state)
    obs2, reward, *_ , info2 = env.step(np.array([0.5], np.float32))  # still usable without a reset
    assert np.isfinite(reward) and np.isfinite(info2["state"]).all() and obs2.shape == obs.shape
    env.close()


# -------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_errors_are_one_short_line(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    config = TrainConfig(out=str(tmp_path / "run")).to_dict()
    save_checkpoint(good, {"kind": "svg", "config": config, "model": {"w": torch.zeros(4000)}, "epoch": 1})
    load_checkpoint(good)
    damaged = {"empty": b"", "half": good.read_bytes()[: good.stat().st_size // 2], "text": b"hello\n",
               "head": good.read_bytes()[:10]}
    for name, data in damaged.items():
        path = tmp_path / f"{name}.pt"
        path.write_bytes(data)
        with pytest.raises(UserError) as e:
            load_checkpoint(path)
        msg = str(e.value)
        assert str(path) in msg and "\n" not in msg and len(msg.replace(str(path), "")) < 150, msg


def test_load_weights_names_the_mismatch(tmp_path: Path) -> None:
    module = torch.nn.Linear(2, 3)
    with pytest.raises(UserError, match=r"weight has shape \(4, 2\), the config needs \(3, 2\)"):
        load_weights(module, torch.nn.Linear(2, 4).state_dict(), tmp_path / "c.pt")
    with pytest.raises(UserError, match="missing"):
        load_weights(module, {"weight": torch.zeros(3, 2)}, tmp_path / "c.pt")
    state = torch.nn.Linear(2, 3).state_dict()
    load_weights(module, state, tmp_path / "c.pt")
    assert torch.equal(module.weight, state["weight"])


# ------------------------------------------------------------------------------- non-finite training
def test_diverging_training_never_writes_a_non_finite_checkpoint(
    tiny_recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    rc = main(["train", "--data", str(tiny_recording), "--out", str(out), "--device", "cpu", "--n-past", "3",
               "--n-future", "4", "--train-episodes", "2", "--width", "8", "--g-dim", "8", "--rnn-size", "16",
               "--rnn-layers", "1", "--norm", "none", "--batch-size", "4", "--stride", "4", "--epochs", "3",
               "--lr", "1e30"])
    err = capsys.readouterr().err  # progress bars, then one error line
    assert rc == 2 and err.count("noether-rl") == 1 and "non-finite" in err.splitlines()[-1], err
    if (out / "last.pt").exists():
        model = load_checkpoint(out / "last.pt")["model"]
        assert all(torch.isfinite(v).all() for v in model.values() if v.is_floating_point())


@pytest.mark.parametrize("step_rule", ["sgd", "normalized"])
def test_huge_inner_lr_never_writes_a_non_finite_checkpoint(
    tiny_recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], step_rule: str
) -> None:
    """An inner lr of 1e38 passes the CLI's checks (finite, positive); the run must either stop with one line
    or finish with finite weights and losses (the engine falls back to the untailored prediction)."""
    out = tmp_path / "run"
    rc = main(["meta-train", "--data", str(tiny_recording), "--out", str(out), "--device", "cpu", "--n-past", "3",
               "--n-future", "4", "--train-episodes", "2", "--width", "8", "--g-dim", "8", "--rnn-size", "16",
               "--rnn-layers", "1", "--norm", "layer", "--batch-size", "4", "--stride", "4", "--epochs", "1",
               "--emb-dim", "8", "--inner-lr", "1e38", "--step-rule", step_rule])
    err = capsys.readouterr().err
    if rc == 0:
        with open(out / "metrics.csv") as f:
            header, *rows = [line.strip().split(",") for line in f if line.strip()]
        losses = [float(r[header.index("loss")]) for r in rows]
        assert losses and all(math.isfinite(v) for v in losses), losses
    else:
        assert rc == 2 and err.count("noether-rl") == 1 and "Traceback" not in err, err
    if (out / "last.pt").exists():
        model = load_checkpoint(out / "last.pt")["model"]
        assert all(torch.isfinite(v).all() for v in model.values() if v.is_floating_point())
