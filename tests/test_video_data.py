"""Video-folder datasets and the Physics 101 ramp loader on tiny videos the tests write themselves."""

from __future__ import annotations

import warnings
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from noether_rl.data import physics101 as p101
from noether_rl.data import video as vd
from noether_rl.errors import UserError


def _frames(n: int, h: int = 24, w: int = 32) -> np.ndarray:
    """Frame i is grey level 8 * i on the left half and 250 - 8 * i on the right half (flip-detectable)."""
    f = np.zeros((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        f[i, :, : w // 2] = min(8 * i, 255)
        f[i, :, w // 2 :] = max(250 - 8 * i, 0)
    return f


def _mp4(path: Path, frames: np.ndarray, fps: float = 30) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, list(frames), fps=fps, codec="libx264", quality=10, macro_block_size=1)
    return path


def _corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    for k in range(4):
        _mp4(root / f"clip_{k}.mp4", _frames(20))
    (root / "sub").mkdir()
    # gif frame durations are whole 10 ms: 40 ms = 25 fps (30 fps is not representable)
    imageio.mimwrite(root / "sub" / "anim.gif", list(_frames(20)), duration=40, loop=0)
    imageio.mimwrite(root / "sub" / "web.webm", list(_frames(20)), fps=30, codec="libvpx",
                     macro_block_size=1, output_params=["-b:v", "1M"])
    for i, fr in enumerate(_frames(20)):
        (root / "frames_a").mkdir(exist_ok=True)
        imageio.imwrite(root / "frames_a" / f"{i}.png", fr)  # natural order: 2.png before 10.png
    _mp4(root / "short.mp4", _frames(4))
    _corrupt(root / "broken.mp4")
    return root


CFG = vd.VideoConfig(size=16, fps=15, folder_fps=30, num_frames=6, test_fraction=0.25, seed=0)


def _load(root: Path, cfg: vd.VideoConfig = CFG, **kw) -> tuple[vd.VideoSet, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        vs = vd.load_video_folder(root, cfg, **kw)
    return vs, [w for w in rec if issubclass(w.category, vd.VideoSkipWarning)]


def test_discover_finds_files_and_frame_folders(folder: Path) -> None:
    names = [p.relative_to(folder).as_posix() for p in vd.discover_videos(folder)]
    assert names == ["broken.mp4", "clip_0.mp4", "clip_1.mp4", "clip_2.mp4", "clip_3.mp4", "frames_a",
                     "short.mp4", "sub/anim.gif", "sub/web.webm"]


def test_decode_resamples_crops_resizes(folder: Path) -> None:
    for name in ("clip_0.mp4", "sub/web.webm", "sub/anim.gif", "frames_a"):
        cfg = vd.VideoConfig(**{**CFG.__dict__, "fps": 12.5}) if name.endswith(".gif") else CFG
        arr = vd.decode_video(folder / name, cfg)
        assert arr.dtype == np.uint8 and arr.shape == (10, 16, 16, 3), name  # 20 frames at 30 fps -> 10 at 15
        left = arr[:, :, :6].astype(float).mean(axis=(1, 2, 3))
        right = arr[:, :, -6:].astype(float).mean(axis=(1, 2, 3))
        np.testing.assert_allclose(left, 8.0 * np.arange(0, 20, 2), atol=6, err_msg=name)  # every 2nd frame
        np.testing.assert_allclose(right, 250 - 8.0 * np.arange(0, 20, 2), atol=6, err_msg=name)
    full = vd.decode_video(folder / "frames_a", vd.VideoConfig(size=16))  # fps=None keeps every frame
    assert len(full) == 20
    ntsc = vd.decode_video(folder / "frames_a", vd.VideoConfig(size=16, fps=15, folder_fps=29.97))
    left = ntsc[:, :, :6].astype(float).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(left, 8.0 * np.arange(0, 20, 2), atol=1)  # nearest frames: 0, 2, 4, ... not 0, 1, 3
    with pytest.raises(vd.VideoDecodeError, match="below the target"):
        vd.decode_video(folder / "frames_a", vd.VideoConfig(size=16, fps=40, folder_fps=30))


def test_centre_crop_takes_full_height_square() -> None:
    f = np.zeros((24, 48, 3), dtype=np.uint8)
    f[:, 12:36] = 200  # the centred 24 x 24 square is bright, the rest dark
    out = vd.crop_resize(f, "square", 12)
    assert out.shape == (12, 12, 3) and out.min() == 200
    squashed = vd.crop_resize(f, "none", 12)
    assert squashed.min() < 100
    with pytest.raises(vd.VideoDecodeError):
        vd.crop_resize(f, 30, 12)


def test_bad_and_short_videos_one_warning_with_count(folder: Path) -> None:
    vs, ws = _load(folder)
    assert len(ws) == 1
    msg = str(ws[0].message)
    assert "skipped 2 of 9 videos" in msg and "broken.mp4" in msg and "short.mp4" in msg
    assert "1 unreadable" in msg and "1 too short" in msg
    assert sorted(s.name for s in vs.skipped) == ["broken.mp4", "short.mp4"]
    assert len(vs.names) == 7 and "broken.mp4" not in vs.names
    summary = vs.summary()
    assert summary["usable"] == 7 and len(summary["skipped"]) == 2


def test_nothing_usable_is_a_user_error(tmp_path: Path) -> None:
    _corrupt(tmp_path / "a.mp4")
    with pytest.raises(UserError, match="no usable video"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vd.load_video_folder(tmp_path, CFG)
    with pytest.raises(UserError, match="no videos"):
        vd.load_video_folder(_empty(tmp_path / "empty"), CFG)
    with pytest.raises(UserError, match="does not exist"):
        vd.load_video_folder(tmp_path / "missing", CFG)
    with pytest.raises(UserError, match="folder_fps"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = tmp_path / "f" / "frames"
        d.mkdir(parents=True)
        imageio.imwrite(d / "0.png", _frames(1)[0])
        vd.load_video_folder(tmp_path / "f", vd.VideoConfig(size=16, fps=15, num_frames=1))


def _empty(p: Path) -> Path:
    p.mkdir()
    return p


def test_split_is_deterministic_disjoint_and_seeded(folder: Path) -> None:
    a, _ = _load(folder)
    b, _ = _load(folder)
    assert a.splits == b.splits
    allidx = sorted(a.splits["train"] + a.splits["val"] + a.splits["test"])
    assert allidx == list(range(7)) and len(a.splits["test"]) == 2 and len(a.splits["train"]) == 5
    c, _ = _load(folder, vd.VideoConfig(**{**CFG.__dict__, "val_fraction": 0.3}))
    assert len(c.splits["val"]) == 2 and not set(c.splits["val"]) & set(c.splits["test"])
    seeds = {tuple(_load(folder, vd.VideoConfig(**{**CFG.__dict__, "seed": s}))[0].splits["test"])
             for s in range(6)}
    assert len(seeds) > 1


def test_items_clips_and_flip_only_in_training(folder: Path) -> None:
    vs, _ = _load(folder)
    test = vs.dataset("test")
    assert not test.flip and len(test) == 2
    item = test[0]
    assert item["frames"].shape == (6, 3, 16, 16) and item["frames"].dtype == torch.float32
    assert item["actions"].shape == (5, 1) and not item["actions"].any()
    i = item["episode"]
    assert item["start"] == (10 - 6) // 2
    np.testing.assert_array_equal(
        (item["frames"].permute(0, 2, 3, 1) * 255).round().byte().numpy(), vs.videos[i][2:8])
    for _ in range(5):  # never flipped
        assert torch.equal(test[0]["frames"], item["frames"])
    train = vs.dataset("train")
    assert train.flip
    torch.manual_seed(0)
    flipped = [not torch.equal(train[0]["frames"], torch.from_numpy(train.clip(0)).permute(0, 3, 1, 2) / 255.0)
               for _ in range(20)]
    assert 0 < sum(flipped) < 20
    x = train[0]["frames"]
    ref = torch.from_numpy(train.clip(0)).permute(0, 3, 1, 2) / 255.0
    assert torch.equal(x, ref) or torch.equal(x, ref.flip(-1))
    assert not vs.dataset("train", train=False).flip
    frames, actions = test.tensors()
    assert frames.shape == (2, 6, 16, 16, 3) and frames.dtype == torch.uint8 and actions.shape == (2, 5, 1)


def test_batch_interface_gathers_and_flips_per_example(folder: Path) -> None:
    vs, _ = _load(folder)
    train = vs.dataset("train")
    idx = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    ref = train.tensors()[0][idx].permute(0, 1, 4, 2, 3).float() / 255.0
    x, a = train.batch(idx, generator=torch.Generator().manual_seed(0))
    assert x.shape == (8, 6, 3, 16, 16) and a.shape == (8, 5, 1) and not a.any()
    flipped = torch.tensor([torch.equal(x[b], ref[b].flip(-1)) for b in range(8)])
    same = torch.tensor([torch.equal(x[b], ref[b]) for b in range(8)])
    assert (flipped | same).all() and 0 < int(flipped.sum()) < 8  # each clip flipped or not, as a whole
    x2, _ = train.batch(idx, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)  # seeded
    x3, _ = vs.dataset("train", train=False).batch(idx)
    assert torch.equal(x3, ref)
    assert train.episode_of(idx).tolist() == [vs.splits["train"][int(i)] for i in idx]


def test_windows_mode(folder: Path) -> None:
    cfg = vd.VideoConfig(**{**CFG.__dict__, "clip": "windows", "stride": 2})
    vs, _ = _load(folder, cfg)
    ds = vs.dataset("test")
    assert len(ds) == 2 * 3  # starts 0, 2, 4 in 10 frames
    assert [ds[k]["start"] for k in range(3)] == [0, 2, 4]


def test_decoded_once_then_cached_on_disk(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = vd.decode_video

    def counting(path, cfg):
        calls["n"] += 1
        return real(path, cfg)

    monkeypatch.setattr(vd, "decode_video", counting)
    first, _ = _load(folder, cache_dir=tmp_path / "cache")
    n_first = calls["n"]
    assert n_first == 9
    ds = first.dataset("train")
    for _ in range(2):  # epochs never decode
        for k in range(len(ds)):
            ds[k]
    assert calls["n"] == n_first
    second, _ = _load(folder, cache_dir=tmp_path / "cache")
    assert calls["n"] == n_first + 1  # only the unreadable video is tried again
    assert second.names == first.names
    assert all(np.array_equal(a, b) for a, b in zip(first.videos, second.videos))


def test_config_errors() -> None:
    for bad in ({"size": 4}, {"fps": -1.0}, {"crop": "left"}, {"num_frames": 0}, {"clip": "end"},
                {"test_fraction": 0.6, "val_fraction": 0.5}):
        with pytest.raises(UserError):
            vd.VideoConfig(**bad).validate()


# ------------------------------------------------------------------------------------------ Physics 101
@pytest.fixture(scope="module")
def phys101(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny copy of the Physics 101 layout: phys101/scenarios/ramp/<object>/<angle>_<setting>/<trial>/."""
    top = tmp_path_factory.mktemp("p101")
    ramp = top / "phys101" / "scenarios" / "ramp"
    long = _frames(50, 24, 40)  # landscape 40 x 24, 50 frames at 30 fps -> 25 at 15 fps
    for obj in ("p_block_01", "w_pole_02"):
        for setting, trials in (("20_01", 3), ("20_02", 2), ("10_01", 2)):
            for t in range(1, trials + 1):
                d = ramp / obj / setting / f"{t:02d}"
                _mp4(d / "Kinect_RGB_1.mp4", long)
                if t == 1:
                    _mp4(d / "Camera_1.mp4", _frames(50, 24, 40))
    _mp4(ramp / "foam_01" / "20_01" / "01" / "Kinect_RGB_1.mp4", _frames(30, 24, 40))  # 15 frames: short
    _corrupt(ramp / "foam_01" / "20_02" / "01" / "Kinect_RGB_1.mp4")
    return top


def test_physics101_protocol(phys101: Path) -> None:
    cfg = p101.Physics101Config(size=16)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        vs = p101.load_physics101_ramp(phys101, cfg)
    ws = [w for w in rec if issubclass(w.category, vd.VideoSkipWarning)]
    assert len(ws) == 1 and "skipped 2 of 12 videos" in str(ws[0].message)
    assert len(vs.names) == 10  # 2 objects x 5 twenty-degree trials; 10-degree and Camera_1 never read
    assert all(n.split("/")[1].startswith("20_") and n.endswith("/Kinect_RGB_1.mp4") for n in vs.names)
    assert {len(v) for v in vs.videos} == {25}
    assert len(vs.splits["train"]) == 8 and len(vs.splits["test"]) == 2  # 80 / 20
    test = vs.dataset("test")
    item = test[0]
    assert item["frames"].shape == (22, 3, 16, 16) and item["start"] == (25 - 22) // 2
    # the middle 22 of 25 resampled frames = source frames 2, 4, ..., 44 (every second one)
    left = item["frames"][:, :, :, :5].mean(dim=(1, 2, 3)) * 255
    np.testing.assert_allclose(left.numpy(), np.minimum(8.0 * np.arange(2, 46, 2), 255), atol=6)
    assert vs.dataset("train").flip and not test.flip
    # every root a user might give finds the same ramp folder
    ramp = phys101 / "phys101" / "scenarios" / "ramp"
    for root in (phys101, phys101 / "phys101", phys101 / "phys101" / "scenarios", ramp):
        assert p101.find_ramp_dir(root) == ramp
    assert len(p101.ramp_videos(phys101, angle=10)) == 4


def test_physics101_min_seconds_and_errors(phys101: Path, tmp_path: Path) -> None:
    cfg = p101.Physics101Config(size=16, min_seconds=2.0)  # 30 frames at 15 fps; the 25-frame clips go
    assert cfg.video_config().required_frames == 30
    with pytest.raises(UserError, match="no usable video"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p101.load_physics101_ramp(phys101, cfg)
    with pytest.raises(UserError, match="scenarios/ramp"):
        p101.find_ramp_dir(tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        p101.find_ramp_dir(tmp_path / "nope")
    with pytest.raises(UserError, match="camera"):
        p101.ramp_videos(phys101, camera="Kinect_Depth")


def test_export_as_recording_keeps_split_and_flips_half_of_train(folder: Path, tmp_path: Path) -> None:
    from noether_rl.data import verify_recording, windows

    cfg = vd.VideoConfig(**{**CFG.__dict__, "val_fraction": 0.15})
    vs, _ = _load(folder, cfg)
    counts = vd.export_recording(vs, tmp_path / "rec", seed=0)
    n_tr, n_va, n_te = (len(vs.splits[s]) for s in ("train", "val", "test"))
    assert counts == {"episodes": 7, "train_episodes": n_tr, "val_episodes": n_va, "test_episodes": n_te}
    manifest = verify_recording(tmp_path / "rec")
    assert manifest["steps"] == 5 and manifest["size"] == 16 and manifest["action_dim"] == 1
    window_cls = getattr(windows, "EpisodeWindows", None) or windows.WindowDataset
    ds = window_cls(tmp_path / "rec", n_past=2, n_future=4)
    assert len(ds) == 7
    stored = [(ds[e]["frames"].permute(0, 2, 3, 1) * 255).round().byte().numpy() for e in range(7)]
    order = vs.splits["train"] + vs.splits["val"] + vs.splits["test"]
    clips = [vs.videos[i][(len(vs.videos[i]) - 6) // 2 :][:6] for i in order]  # the middle 6 frames
    flipped = [np.array_equal(s, c[:, :, ::-1]) and not np.array_equal(s, c) for s, c in zip(stored, clips)]
    same = [np.array_equal(s, c) for s, c in zip(stored, clips)]
    assert all(f or s for f, s in zip(flipped, same))
    assert any(flipped[:n_tr]) and not any(flipped[n_tr:])  # some train clips flipped; val and test never
    assert vd.export_recording(vs, tmp_path / "rec", seed=0) == counts  # a rerun is a no-op
    with pytest.raises(UserError, match="different"):
        vd.export_recording(vs, tmp_path / "rec", seed=1)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(UserError, match="not empty"):
        vd.export_recording(vs, tmp_path / "other")
    unflipped = vd.export_recording(vs, tmp_path / "rec2", flip_train=False)
    assert unflipped == counts
