"""Bad-input table: every user mistake on the CLI is exit code 2, exactly one line on stderr, nothing written.

Each row runs ``noether_rl.cli.main.main`` in-process on tiny inputs made here (a 4-episode recording from
``conftest.tiny_recording`` and damaged copies of it; checkpoints crafted with ``torch.save``). "Nothing
written" means: the row's ``--out`` (a fresh nested path) does not exist afterwards, and every file and
directory under the test's tmp dir and under the shared inputs is unchanged.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from noether_rl.cli.main import main
from noether_rl.data import open_episode, shard_name, write_npz

CUDA = "cuda:99" if torch.cuda.is_available() else "cuda"  # a GPU this machine does not have
DATA = ["--n-past", "3", "--n-future", "4", "--train-episodes", "2", "--device", "cpu"]
SMALL = ["--width", "8", "--g-dim", "8", "--rnn-size", "16", "--rnn-layers", "1", "--norm", "layer",
         "--batch-size", "4", "--stride", "4", "--epochs", "1"]
REC = ["record", "--episodes", "2", "--steps", "5", "--size", "32", "--seed", "1", "--no-progress"]
TRAIN = ["train", "--data", "{data}", *DATA, *SMALL]
META = ["meta-train", "--data", "{data}", *DATA, *SMALL, "--emb-dim", "8"]
EVAL = ["evaluate", "--data", "{data}", *DATA, "--no-video", "--max-windows", "4"]


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("this checkpoint ran code",))


# ------------------------------------------------------------------------------------------ inputs
def rewrite_shard(root: Path, i: int, arrays: dict[str, np.ndarray]) -> None:
    """Overwrite shard ``i`` and make the manifest's hash and size match it (a hand-edited recording)."""
    path = root / shard_name(i)
    with open(path, "wb") as f:
        write_npz(f, arrays)
    set_shard_entry(root, i)


def set_shard_entry(root: Path, i: int) -> None:
    path = root / shard_name(i)
    m = json.loads((root / "manifest.json").read_text())
    m["shards"][i]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    m["shards"][i]["bytes"] = path.stat().st_size
    (root / "manifest.json").write_text(json.dumps(m))


@pytest.fixture(scope="module")
def inputs(tiny_recording: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Damaged recordings and checkpoints (read-only inputs of the rows)."""
    root = tmp_path_factory.mktemp("inputs")
    paths: dict[str, Path] = {"data": tiny_recording}

    def copy(name: str) -> Path:
        dst = root / name
        shutil.copytree(tiny_recording, dst)
        paths[name] = dst
        return dst

    d = copy("incomplete")  # a kill -9 during `record`: config-only manifest, a shard missing
    m = json.loads((d / "manifest.json").read_text())
    (d / "manifest.json").write_text(json.dumps({**m, "complete": False, "shards": []}))
    (d / shard_name(3)).unlink()
    d = copy("nan")  # NaN action in a training episode, inf state in a held-out one (hashes fixed)
    ep = open_episode(d, 0)
    ep["actions"][3, 0] = np.nan
    rewrite_shard(d, 0, ep)
    ep = open_episode(d, 3)
    ep["states"][5, 1] = np.inf
    rewrite_shard(d, 3, ep)
    d = copy("inf_reward")
    ep = open_episode(d, 1)
    ep["rewards"][0] = -np.inf
    rewrite_shard(d, 1, ep)
    d = copy("mixed")  # episode 1 with 2-d actions
    ep = open_episode(d, 1)
    ep["actions"] = np.repeat(ep["actions"], 2, axis=1)
    rewrite_shard(d, 1, ep)
    d = copy("zero")  # 0-byte shard whose hash and size the manifest agrees with
    (d / shard_name(1)).write_bytes(b"")
    set_shard_entry(d, 1)

    (root / "afile").write_text("not a directory\n")
    (root / "empty.pt").write_bytes(b"")
    torch.save({"config": {"out": "x"}, "model": {"w": torch.zeros(2000)}, "epoch": 1}, root / "full.pt")
    (root / "trunc.pt").write_bytes((root / "full.pt").read_bytes()[:700])
    (root / "full.pt").unlink()
    torch.save({"config": {"out": "x"}, "model": {}, "evil": _Evil()}, root / "pickle.pt")
    (root / "text.pt").write_text("hello\n")
    torch.save({"config": {"data": "x", "model": 3}, "model": {}, "epoch": 0}, root / "badcfg.pt")
    torch.save({"config": "not a dict", "model": {}, "epoch": 0}, root / "strcfg.pt")
    torch.save([1, 2, 3], root / "list.pt")
    (root / "ckptdir").mkdir()
    for name in ("afile", "empty.pt", "trunc.pt", "pickle.pt", "text.pt", "badcfg.pt", "strcfg.pt", "list.pt",
                 "ckptdir"):
        paths[name.replace(".pt", "")] = root / name
    return paths


@pytest.fixture(scope="module")
def svg_ckpt(tiny_recording: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained SVG checkpoint (for rows that must get past loading the model)."""
    out = tmp_path_factory.mktemp("svg") / "run"
    assert main(["train", "--data", str(tiny_recording), *DATA, *SMALL, "--out", str(out)]) == 0
    return out / "last.pt"


@pytest.fixture(scope="module")
def wrong_weights_ckpt(svg_ckpt: Path) -> Path:
    """A checkpoint that loads and whose config parses, but does not describe its weights."""
    ckpt = torch.load(svg_ckpt, weights_only=True)
    ckpt["config"]["model"]["rnn_size"] = 2 * ckpt["config"]["model"]["rnn_size"]
    path = svg_ckpt.parent.parent / "wrong_config.pt"
    torch.save(ckpt, path)
    return path


# -------------------------------------------------------------------------------------------- rows
# (id, argv, substring of the one error line, fault to inject, *marks); placeholders are filled per test
ROWS: list[tuple[Any, ...]] = [
    # record
    ("rec-unknown-env", [*REC, "--out", "{out}", "--env", "Nope-v0"], "unknown env", None),
    ("rec-unknown-policy", [*REC, "--out", "{out}", "--policy", "dance"], "unknown policy", None),
    ("rec-episodes-0", [*REC, "--out", "{out}", "--episodes", "0"], "episodes must be a positive", None),
    ("rec-steps-neg", [*REC, "--out", "{out}", "--steps", "-3"], "steps must be a positive", None),
    ("rec-size-4", [*REC, "--out", "{out}", "--size", "4"], "at least 8 pixels", None),
    ("rec-num-envs-0", [*REC, "--out", "{out}", "--num-envs", "0"], "num_envs must be", None),
    ("rec-seed-neg", [*REC, "--out", "{out}", "--seed", "-1"], "seed must be a non-negative", None),
    ("rec-episodes-word", [*REC, "--out", "{out}", "--episodes", "two"], "invalid int value", None),
    ("rec-out-is-file", [*REC, "--out", "{afile}"], "not a directory", None),
    ("rec-out-under-file", [*REC, "--out", "{afile}/sub"], "not writable", None),
    ("rec-out-other-recording", [*REC, "--out", "{data}"], "different recording", None),
    ("rec-out-foreign-dir", [*REC, "--out", "{foreign}"], "not part of this recording", None),
    ("rec-out-no-permission", [*REC, "--out", "{out}"], "not writable", "noaccess"),
    ("rec-disk-full", [*REC, "--out", "{out}"], "No space left on device", "enospc"),
    # train
    ("train-no-recording", ["train", "--data", "{tmp}/missing", *DATA, *SMALL, "--out", "{out}"], "not a recording",
     None),
    ("train-data-is-file", ["train", "--data", "{afile}", *DATA, *SMALL, "--out", "{out}"], "not a recording", None),
    ("train-incomplete", ["train", "--data", "{incomplete}", *DATA, *SMALL, "--out", "{out}"],
     "this recording is incomplete: rerun the same record command", None),
    ("train-nan-action", ["train", "--data", "{nan}", *DATA, *SMALL, "--out", "{out}"], "episode_00000.npz", None),
    ("train-inf-reward", ["train", "--data", "{inf_reward}", *DATA, *SMALL, "--out", "{out}"], "non-finite", None),
    ("train-mixed-action-sizes", ["train", "--data", "{mixed}", *DATA, *SMALL, "--out", "{out}"],
     "episode_00001.npz: actions of size 2", None),
    ("train-zero-byte-shard", ["train", "--data", "{zero}", *DATA, *SMALL, "--out", "{out}"], "episode_00001.npz",
     None),
    ("train-device-bogus", [*TRAIN, "--out", "{out}", "--device", "bogus"], "unknown device 'bogus'", None),
    ("train-device-missing-gpu", [*TRAIN, "--out", "{out}", "--device", CUDA], "CUDA", None),
    ("train-device-meta", [*TRAIN, "--out", "{out}", "--device", "meta"], "not supported", None),
    ("train-seed-neg", [*TRAIN, "--out", "{out}", "--seed", "-1"], "--seed", None),
    ("train-seed-2**32", [*TRAIN, "--out", "{out}", "--seed", str(2**32)], "2**32 - 1", None),
    ("train-lr-nan", [*TRAIN, "--out", "{out}", "--lr", "nan"], "--lr: must be a finite positive", None),
    ("train-lr-inf", [*TRAIN, "--out", "{out}", "--lr", "inf"], "--lr", None),
    ("train-lr-neg", [*TRAIN, "--out", "{out}", "--lr", "-1e-3"], "--lr", None),
    ("train-lr-0", [*TRAIN, "--out", "{out}", "--lr", "0"], "--lr", None),
    ("train-epochs-0", [*TRAIN, "--out", "{out}", "--epochs", "0"], "--epochs", None),
    ("train-batch-size-neg", [*TRAIN, "--out", "{out}", "--batch-size", "-4"], "--batch-size", None),
    ("train-out-is-file", [*TRAIN, "--out", "{afile}"], "not a directory", None),
    ("train-out-under-file", [*TRAIN, "--out", "{afile}/run"], "not writable", None),
    ("train-out-no-permission", [*TRAIN, "--out", "{out}"], "not writable", "noaccess"),
    ("train-too-many-train-episodes", [*TRAIN, "--out", "{out}", "--train-episodes", "9"], "train_episodes", None),
    ("train-windows-too-long", [*TRAIN, "--out", "{out}", "--n-future", "40"], "frames", None),
    # meta-train
    ("meta-inner-steps-0", [*META, "--out", "{out}", "--inner-steps", "0"], "--inner-steps", None),
    ("meta-inner-steps-neg", [*META, "--out", "{out}", "--inner-steps", "-1"], "--inner-steps", None),
    ("meta-inner-lr-neg", [*META, "--out", "{out}", "--inner-lr", "-5"], "--inner-lr", None),
    ("meta-inner-lr-nan", [*META, "--out", "{out}", "--inner-lr", "nan"], "--inner-lr", None),
    ("meta-emb-lr-inf", [*META, "--out", "{out}", "--emb-lr", "inf"], "--emb-lr", None),
    ("meta-init-missing", [*META, "--out", "{out}", "--init-from", "{tmp}/none.pt"], "{tmp}/none.pt", None),
    ("meta-init-empty", [*META, "--out", "{out}", "--init-from", "{empty}"], "empty (0 bytes)", None),
    ("meta-init-truncated", [*META, "--out", "{out}", "--init-from", "{trunc}"], "truncated or corrupt", None),
    ("meta-init-pickle", [*META, "--out", "{out}", "--init-from", "{pickle}"], "refusing to load", None),
    ("meta-init-bad-config", [*META, "--out", "{out}", "--init-from", "{badcfg}"], "invalid config", None),
    ("meta-init-directory", [*META, "--out", "{out}", "--init-from", "{ckptdir}"], "is a directory", None),
    # evaluate
    ("eval-model-without-name", [*EVAL, "--out", "{out}", "badmodel"], "NAME=CHECKPOINT", None),
    ("eval-same-name-twice", [*EVAL, "--out", "{out}", "m={empty}", "m={trunc}"], "given twice", None),
    ("eval-missing-ckpt", [*EVAL, "--out", "{out}", "m={tmp}/none.pt"], "{tmp}/none.pt", None),
    ("eval-empty-ckpt", [*EVAL, "--out", "{out}", "m={empty}"], "empty (0 bytes)", None),
    ("eval-truncated-ckpt", [*EVAL, "--out", "{out}", "m={trunc}"], "truncated or corrupt", None),
    ("eval-text-ckpt", [*EVAL, "--out", "{out}", "m={text}"], "{text}", None),
    ("eval-pickle-ckpt", [*EVAL, "--out", "{out}", "m={pickle}"], "refusing to load", None),
    ("eval-bad-config", [*EVAL, "--out", "{out}", "m={badcfg}"], "invalid config", None),
    ("eval-string-config", [*EVAL, "--out", "{out}", "m={strcfg}"], "no valid config", None),
    ("eval-not-a-dict", [*EVAL, "--out", "{out}", "m={list}"], "not a noether-rl checkpoint", None),
    ("eval-inner-steps-neg", [*EVAL, "--out", "{out}", "--inner-steps", "-1", "m={empty}"], "--inner-steps", None),
    ("eval-inner-lr-nan", [*EVAL, "--out", "{out}", "--inner-lr", "nan", "m={empty}"], "--inner-lr", None),
    ("eval-inner-lr-neg", [*EVAL, "--out", "{out}", "--inner-lr", "-5", "m={empty}"], "--inner-lr", None),
    ("eval-device-bogus", [*EVAL, "--out", "{out}", "--device", "bogus", "m={empty}"], "unknown device", None),
    ("eval-seed-neg", [*EVAL, "--out", "{out}", "--seed", "-1", "m={empty}"], "--seed", None),
    ("eval-out-is-file", [*EVAL, "--out", "{afile}", "m={empty}"], "not a directory", None),
    ("eval-incomplete", ["evaluate", "--data", "{incomplete}", *DATA, "--out", "{out}", "--no-video", "m={svg}"],
     "this recording is incomplete", None),
    ("eval-inf-state", ["evaluate", "--data", "{nan}", *DATA, "--out", "{out}", "--no-video", "m={svg}"],
     "episode_00003.npz: states hold non-finite values", None),
    ("eval-weights-do-not-match-config", [*EVAL, "--out", "{out}", "m={wrong_weights}"], "wrong_config.pt", None),
    # quickstart, reproduce, usage
    ("quickstart-out-is-file", ["quickstart", "--out", "{afile}"], "not a directory", None),
    ("quickstart-seed-neg", ["quickstart", "--out", "{out}", "--seed", "-1"], "--seed", None),
    ("quickstart-device-bogus", ["quickstart", "--out", "{out}", "--device", "bogus"], "unknown device", None),
    ("reproduce-seed-neg", ["reproduce", "pendulum-video", "--out", "{out}", "--seeds", "0", "-1"], "--seeds", None),
    ("reproduce-out-is-file", ["reproduce", "pendulum-video", "--out", "{afile}"], "not a directory", None),
    ("reproduce-wrong-frame-size", ["reproduce", "pendulum-video", "--out", "{out}", "--data", "{data}", "--scale",
                                    "paper", "--device", "cpu"], "needs 64", None),
    ("reproduce-other-incomplete", ["reproduce", "pendulum-video", "--out", "{out}", "--data", "{incomplete}",
                                    "--device", "cpu"], "this recording is incomplete", None),
    # a mistyped --data is refused, not recorded into (nor is a directory that holds no recording)
    ("reproduce-data-missing", ["reproduce", "pendulum-video", "--out", "{out}", "--data", "{tmp}/typo",
                                "--device", "cpu"], "{tmp}/typo does not exist", None),
    ("reproduce-data-not-a-recording", ["reproduce", "pendulum-video", "--out", "{out}", "--data", "{foreign}",
                                        "--device", "cpu"], "is not a recording", None),
    # a mistyped --reward-model is refused, not written by a new fit
    ("plan-reward-model-missing", ["plan", "--checkpoint", "{tmp}/none.pt", "--out", "{out}", "--reward-model",
                                   "{tmp}/typo.pt"], "{tmp}/typo.pt does not exist", None),
    ("dream-reward-model-directory", ["dream-train", "--checkpoint", "{tmp}/none.pt", "--out", "{out}",
                                      "--reward-model", "{foreign}"], "is a directory", None),
    ("no-subcommand", [], "required", None),
    ("unknown-flag", [*TRAIN, "--out", "{out}", "--bogus-flag"], "unrecognized arguments", None),
]


def _snapshot(*roots: Path) -> dict[str, tuple[int, int] | None]:
    """Every file (size, mtime) and directory under ``roots``."""
    snap: dict[str, tuple[int, int] | None] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for d in dirnames:
                snap[os.path.join(dirpath, d)] = None
            for f in filenames:
                st = os.stat(os.path.join(dirpath, f))
                snap[os.path.join(dirpath, f)] = (st.st_size, st.st_mtime_ns)
    return snap


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """-> (exit code, stderr lines) of ``noether-rl ARGV`` run in-process."""
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse usage errors exit directly
        rc = e.code if isinstance(e.code, int) else 1
    return rc, capsys.readouterr().err.splitlines()


@pytest.mark.parametrize(("argv", "needle", "fault"),
                         [pytest.param(*r[1:4], id=r[0], marks=r[4:]) for r in ROWS])
def test_bad_input_is_one_line_exit_2_nothing_written(
    argv: list[str], needle: str, fault: str | None, inputs: dict[str, Path], request: pytest.FixtureRequest,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine\n")
    subs = {k: str(v) for k, v in inputs.items()}
    subs |= {"tmp": str(tmp_path), "out": str(tmp_path / "new" / "deeper" / "out"), "foreign": str(tmp_path / "foreign")}
    if any("{svg}" in a for a in argv):
        subs["svg"] = str(request.getfixturevalue("svg_ckpt"))
    if any("{wrong_weights}" in a for a in argv):
        subs["wrong_weights"] = str(request.getfixturevalue("wrong_weights_ckpt"))
    argv = [a.format(**subs) for a in argv]
    needle = needle.format(**subs)
    shared = [inputs["data"], inputs["afile"].parent]
    before = _snapshot(tmp_path, *shared)
    capsys.readouterr()

    if fault == "enospc":
        def full(fd: int) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        monkeypatch.setattr(os, "fsync", full)
    elif fault == "noaccess":
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: not str(p).startswith(str(tmp_path))
                            and real(p, mode, **kw))
    rc, err = run_cli(argv, capsys)
    monkeypatch.undo()

    assert rc == 2, err
    assert len(err) == 1, err
    assert err[0].startswith("noether-rl"), err
    assert needle in err[0], err
    assert "Traceback" not in err[0]
    assert len(err[0]) < 300, err
    assert not (tmp_path / "new").exists(), "a failed run left its output directory behind"
    assert _snapshot(tmp_path, *shared) == before


def test_table_is_large_enough() -> None:
    assert len(ROWS) >= 40


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc, err = run_cli([*REC, "--out", str(ro / "rec")], capsys)
    finally:
        ro.chmod(0o755)
    assert rc == 2 and len(err) == 1 and "not writable" in err[0]
    assert list(ro.iterdir()) == []


def test_permission_error_inside_a_command_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import noether_rl.recorders.recorder as recorder

    def denied(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path / "x"))

    monkeypatch.setattr(recorder, "write_episode", denied)
    rc, err = run_cli([*REC, "--out", str(tmp_path / "rec")], capsys)
    assert rc == 2 and len(err) == 1 and "Permission denied" in err[0] and str(tmp_path / "x") in err[0]


def test_programming_errors_keep_their_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only user-fixable OSErrors become one line: a FileNotFoundError or TypeError from a bug propagates."""
    import noether_rl.recorders.recorder as recorder

    for exc in (FileNotFoundError(errno.ENOENT, "No such file or directory", "internal.tmp"), TypeError("bug")):
        def boom(*args: Any, exc: Exception = exc, **kwargs: Any) -> None:
            raise exc

        monkeypatch.setattr(recorder, "write_episode", boom)
        with pytest.raises(type(exc)):
            main([*REC, "--out", str(tmp_path / "rec")])
