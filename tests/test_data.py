"""Recording readers: manifest, verification, corrupt-shard errors, window datasets, splits."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from noether_rl.data import (
    EpisodeWindows,
    load_manifest,
    open_episode,
    split_episodes,
    verify_recording,
    write_npz,
)
from noether_rl.envs import PIXEL_PENDULUM_ID
from noether_rl.errors import DataError, UserError
from noether_rl.recorders import RecordConfig, record

EPISODES, STEPS, SIZE = 3, 10, 32


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "rec"
    cfg = RecordConfig(PIXEL_PENDULUM_ID, "random", EPISODES, STEPS, SIZE, 3, str(out), progress=False)
    return record(cfg)


@pytest.fixture
def copy(rec: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "rec"
    shutil.copytree(rec, dst)
    return dst


def test_write_npz_is_deterministic_and_loadable() -> None:
    arrays = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones((2, 2), bool)}
    b1, b2 = io.BytesIO(), io.BytesIO()
    write_npz(b1, arrays)
    write_npz(b2, arrays)
    assert b1.getvalue() == b2.getvalue()
    b1.seek(0)
    with np.load(b1) as z:
        np.testing.assert_array_equal(z["a"], arrays["a"])
        np.testing.assert_array_equal(z["b"], arrays["b"])


def test_manifest_and_open_episode(rec: Path) -> None:
    m = load_manifest(rec)
    assert m["episodes"] == EPISODES and m["steps"] == STEPS and m["size"] == SIZE
    ep = open_episode(rec, 2)
    assert ep["frames"].shape == (STEPS + 1, SIZE, SIZE, 3)
    with pytest.raises(DataError, match="out of range"):
        open_episode(rec, EPISODES)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="manifest.json"):
        load_manifest(tmp_path)


@pytest.mark.parametrize("damage", ["delete", "truncate", "flip", "wrong_shape"])
def test_bad_shard_error_names_the_file(copy: Path, damage: str) -> None:
    path = copy / "episode_00001.npz"
    data = path.read_bytes()
    if damage == "delete":
        path.unlink()
    elif damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        mid = len(data) // 2
        path.write_bytes(data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :])
    else:
        arrays = open_episode(copy, 1)
        arrays["frames"] = arrays["frames"][:, :16]
        with open(path, "wb") as f:
            write_npz(f, arrays)
    with pytest.raises(DataError, match="episode_00001.npz"):
        verify_recording(copy)
    # without the hash check the content checks still catch it
    with pytest.raises(DataError, match="episode_00001.npz"):
        open_episode(copy, 1, check_hash=False)
    open_episode(copy, 0)


def test_incomplete_recording_is_rejected(copy: Path) -> None:
    m = copy / "manifest.json"
    m.write_text(m.read_text().replace('"complete": true', '"complete": false'))
    with pytest.raises(DataError, match="incomplete"):
        verify_recording(copy)


def test_windows_shapes_and_action_alignment(rec: Path) -> None:
    n_past, n_future = 2, 3
    length = n_past + n_future
    ds = EpisodeWindows(rec, n_past, n_future, verify=True)
    per_episode = STEPS + 1 - length + 1
    assert len(ds) == EPISODES * per_episode
    item = ds[per_episode + 4]
    assert item["episode"] == 1 and item["start"] == 4
    assert item["frames"].shape == (length, 3, SIZE, SIZE) and item["frames"].dtype == torch.float32
    assert 0.0 <= float(item["frames"].min()) and float(item["frames"].max()) <= 1.0
    assert item["actions"].shape == (length - 1, 1)
    ep = open_episode(rec, 1)
    np.testing.assert_array_equal(
        item["frames"][0].permute(1, 2, 0).numpy(), ep["frames"][4] / np.float32(255)
    )
    # actions[t] produces frames[t+1]: replaying the pendulum dynamics on the recorded states
    states, actions = ep["states"].astype(np.float64), item["actions"].numpy()[:, 0].astype(np.float64)
    for t in range(length - 1):
        th, thd = states[4 + t]
        new_thd = np.clip(thd + (15.0 * np.sin(th) + 3.0 * actions[t]) * 0.05, -8, 8)
        assert new_thd == pytest.approx(states[4 + t + 1, 1], abs=1e-4)


def test_windows_never_cross_episodes_and_stride(rec: Path) -> None:
    ds = EpisodeWindows(rec, 4, 4, episodes=[2, 0], stride=3)
    starts = [(ds[k]["episode"], ds[k]["start"]) for k in range(len(ds))]
    assert starts == [(2, 0), (2, 3), (0, 0), (0, 3)]
    frames, actions = ds.batch(torch.arange(len(ds)))
    assert frames.shape == (4, 8, 3, SIZE, SIZE) and frames.dtype == torch.float32
    assert actions.shape == (4, 7, 1)
    np.testing.assert_array_equal((frames[1] * 255).round().byte().permute(0, 2, 3, 1).numpy(),
                                  open_episode(rec, 2)["frames"][3:11])
    assert ds.episode_of(torch.tensor([0, 3])).tolist() == [2, 0]
    with pytest.raises(UserError, match="do not fit"):
        EpisodeWindows(rec, 10, 5)


@pytest.mark.parametrize("workers", [0, 2])
def test_one_epoch_sees_every_window_once(rec: Path, workers: int) -> None:
    ds = EpisodeWindows(rec, 2, 2)
    loader = DataLoader(ds, batch_size=4, shuffle=True, num_workers=workers)
    seen = []
    for batch in loader:
        assert batch["frames"].shape[1:] == (4, 3, SIZE, SIZE)
        seen += list(zip(batch["episode"].tolist(), batch["start"].tolist()))
    expected = [(e, s) for e in range(EPISODES) for s in range(STEPS + 1 - 4 + 1)]
    assert sorted(seen) == expected


def test_split_episodes() -> None:
    assert split_episodes(5, 3) == ([0, 1, 2], [3, 4])
    with pytest.raises(UserError):
        split_episodes(5, 6)
