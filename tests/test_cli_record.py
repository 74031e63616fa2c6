"""``noether-rl record``: a tiny run, and one-line errors with exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from noether_rl.cli.main import main
from noether_rl.data import verify_recording

TINY = ["record", "--episodes", "2", "--steps", "5", "--size", "32", "--seed", "1", "--no-progress"]


def test_record_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rec"
    assert main([*TINY, "--out", str(out), "--policy", "zero", "--num-envs", "2"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    m = verify_recording(out)
    assert m["episodes"] == 2 and m["policy"] == "zero"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--env", "Nope-v0"], "unknown env 'Nope-v0'"),
        (["--policy", "dance"], "unknown policy 'dance'"),
        (["--episodes", "0"], "episodes must be a positive integer"),
        (["--steps", "-3"], "steps must be a positive integer"),
        (["--num-envs", "0"], "num_envs must be a positive integer"),
    ],
)
def test_record_cli_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], needle: str
) -> None:
    assert main([*TINY, "--out", str(tmp_path / "rec"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("noether-rl record: error: ") and needle in err


def test_record_cli_bad_output_dirs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main([*TINY, "--out", str(blocker / "sub")]) == 2
    assert "not writable" in capsys.readouterr().err
    out = tmp_path / "rec"
    assert main([*TINY, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main([*TINY, "--out", str(out), "--seed", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different recording" in err and "seed=1" in err


def test_record_cli_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["record", "--episodes", "two", "--out", "x"])
    assert e.value.code == 2
