"""Episode-level statistics (noether_rl.eval.stats): clustered standard errors, paired differences, pooling."""

from __future__ import annotations

import math

import pytest
import torch

from noether_rl.errors import UserError
from noether_rl.eval.stats import (
    WindowScores,
    cluster_mean_se,
    compare,
    episode_bootstrap_se,
    load_scores,
    paired_difference,
    pool_seeds,
    save_scores,
    summarize,
)


def _identical_windows(n_per_episode: int) -> tuple[torch.Tensor, torch.Tensor]:
    """4 episodes with values 1, 2, 3, 4; every window of an episode is identical."""
    values = torch.tensor([1.0, 2.0, 3.0, 4.0]).repeat_interleave(n_per_episode)
    episodes = torch.arange(4).repeat_interleave(n_per_episode)
    return values, episodes


def test_se_counts_episodes_not_windows() -> None:
    expected = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64).std().item() / 2  # sd of 4 episode means / sqrt(4)
    for n in (1, 10, 100):
        values, episodes = _identical_windows(n)
        s = cluster_mean_se(values, episodes)
        assert s.n_episodes == 4 and s.n_windows == 4 * n
        assert s.mean.item() == pytest.approx(2.5)
        assert s.se.item() == pytest.approx(expected, rel=1e-12)  # the same however many copies
    naive = values.std().item() / math.sqrt(values.numel())  # treating 400 windows as independent
    assert naive < expected / 5


def test_se_per_step_and_masks() -> None:
    g = torch.Generator().manual_seed(0)
    ep = torch.arange(6).repeat_interleave(3)
    v = torch.randn(18, 5, generator=g, dtype=torch.float64)
    s = cluster_mean_se(v, ep)
    ep_means = v.reshape(6, 3, 5).mean(1)  # balanced: se == sd(episode means)/sqrt(E)
    torch.testing.assert_close(s.mean, ep_means.mean(0))
    torch.testing.assert_close(s.se, ep_means.std(0) / math.sqrt(6))
    mask = ep >= 3
    sm = cluster_mean_se(v, ep, mask)
    assert sm.n_episodes == 3 and sm.n_windows == 9
    torch.testing.assert_close(sm.se, ep_means[3:].std(0) / math.sqrt(3))
    one = cluster_mean_se(v, ep, ep == 0)
    assert one.n_episodes == 1 and torch.isnan(one.se).all()  # undefined from one episode
    none = cluster_mean_se(v, ep, torch.zeros(18, dtype=torch.bool))
    assert none.n_windows == 0 and torch.isnan(none.mean).all()
    with pytest.raises(UserError):
        cluster_mean_se(v, ep[:-1])


def test_unbalanced_episodes_match_bootstrap() -> None:
    g = torch.Generator().manual_seed(1)
    counts = torch.randint(1, 8, (40,), generator=g)
    ep = torch.arange(40).repeat_interleave(counts)
    effect = torch.randn(40, generator=g, dtype=torch.float64)[ep]
    v = effect + 0.1 * torch.randn(ep.numel(), generator=g, dtype=torch.float64)
    se = cluster_mean_se(v, ep).se.item()
    boot = episode_bootstrap_se(v, ep, n_boot=4000, seed=0).item()
    assert boot == pytest.approx(se, rel=0.15)


def test_paired_difference_uses_same_windows() -> None:
    g = torch.Generator().manual_seed(2)
    ep = torch.arange(8).repeat_interleave(5)
    hard = 10 * torch.randn(8, 1, generator=g, dtype=torch.float64)[ep]  # big per-episode difficulty, shared
    control = hard + 0.01 * torch.randn(40, 3, generator=g, dtype=torch.float64)
    model = control - 0.5 + 0.01 * torch.randn(40, 3, generator=g, dtype=torch.float64)
    d = paired_difference(model, control, ep)
    assert d["mean"] == pytest.approx(-0.5, abs=0.01)
    assert d["se"] < 0.01 and d["significant"] and d["z"] < -2
    assert d["n_episodes"] == 8 and len(d["mean_per_step"]) == 3
    # unpaired, the difficulty swamps the difference
    unpaired = math.hypot(cluster_mean_se(model.mean(1), ep).se.item(), cluster_mean_se(control.mean(1), ep).se.item())
    assert unpaired > 100 * d["se"]
    same = paired_difference(control, control, ep)
    assert same["mean"] == 0 and not same["significant"]
    with pytest.raises(UserError):
        paired_difference(model, control[:-1], ep)


def _scores(shift: float, seed: int) -> WindowScores:
    g = torch.Generator().manual_seed(seed)
    ep = torch.arange(10).repeat_interleave(4)
    base = torch.rand(40, 6, generator=g, dtype=torch.float64)
    noise = 0.01 * torch.randn(40, 6, generator=g, dtype=torch.float64)
    up = ep < 3
    return WindowScores(ep, torch.arange(40) % 4, {
        "noether": {"mse": base + shift + noise, "ssim": 1 - base + shift},  # better mse, worse ssim
        "svg": {"mse": base, "ssim": 1 - base},
    }, {"upright": up, "swinging": ~up})


def test_window_scores_summary_pool_and_verdict() -> None:
    runs = [_scores(-0.05, s) for s in (0, 1, 2)]
    s = runs[0].summary("svg", "upright")
    assert s["n_windows"] == 12 and s["n_episodes"] == 3
    assert set(s["metrics"]["mse"]) >= {"mean", "se", "mean_per_step", "se_per_step"}
    pooled = pool_seeds(runs)
    torch.testing.assert_close(pooled.metrics["svg"]["mse"], torch.stack([r.metrics["svg"]["mse"] for r in runs]).mean(0))
    rows = compare("noether", ["svg"], runs, metrics=("mse", "ssim", "angle_error"))
    assert {(r["subset"], r["metric"]) for r in rows} == {(sub, m) for sub in ("all", "upright", "swinging")
                                                          for m in ("mse", "ssim")}  # angle missing: skipped
    for r in rows:
        assert r["significant"] and r["n_seeds"] == 3 and len(r["per_seed"]) == 3
        assert r["better"] == (r["metric"] == "mse")  # lower mse is better; lower ssim is worse
    bad = _scores(0.0, 0)
    bad.start = bad.start + 1
    with pytest.raises(UserError, match="different windows"):
        pool_seeds([runs[0], bad])
    with pytest.raises(UserError):
        runs[0].summary("nope")


def test_summarize_shapes() -> None:
    ep = torch.tensor([0, 0, 1, 1, 2])
    out = summarize({"mse": torch.arange(10.0).reshape(5, 2)}, ep)
    assert out["mse"]["mean"] == pytest.approx(4.5) and out["mse"]["n_episodes"] == 3
    assert out["mse"]["mean_per_step"] == pytest.approx([4.0, 5.0])


def test_scores_file_round_trip(tmp_path) -> None:
    sc = _scores(0.1, 3)
    path = save_scores(tmp_path / "w" / "scores.pt", sc)
    back = load_scores(path)
    assert torch.equal(back.episode, sc.episode) and torch.equal(back.start, sc.start)
    assert torch.equal(back.metrics["noether"]["mse"], sc.metrics["noether"]["mse"])
    assert torch.equal(back.masks["upright"], sc.masks["upright"])
    (tmp_path / "bad.pt").write_bytes(b"nope")
    with pytest.raises(UserError):
        load_scores(tmp_path / "bad.pt")
    with pytest.raises(UserError):
        load_scores(tmp_path / "missing.pt")
