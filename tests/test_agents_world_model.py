"""WorldModel.imagine (batched, tailored once per problem, seeded) and the reward models."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch

import noether_rl.envs  # noqa: F401  (registers the env ids)
from noether_rl.agents.reward import (
    FunctionReward,
    RewardFitConfig,
    fit_reward,
    load_reward,
    pendulum_angle_from_frames,
    save_reward,
)
from noether_rl.agents.world_model import WorldModel, obs_to_tensor, tensor_to_obs
from noether_rl.errors import UserError
from noether_rl.models import SVG, EmbeddingConfig, NoetherEmbedding, SVGConfig
from noether_rl.noether import NoetherConfig, NoetherNetwork

S, P = 32, 3


def tiny_world_model(stochastic: bool = False, noether: bool = True, mode: str = "shared") -> WorldModel:
    torch.manual_seed(0)
    svg = SVG(SVGConfig(image_size=S, width=4, g_dim=8, rnn_size=16, rnn_layers=1, norm="layer", stochastic=stochastic,
                        z_dim=4))
    model = NoetherNetwork(svg, NoetherEmbedding(EmbeddingConfig(image_size=S, emb_dim=8)), NoetherConfig()) \
        if noether else svg
    reward = FunctionReward(lambda a, x: -x.mean((1, 2, 3)) - 0.1 * a.pow(2).sum(-1))
    return WorldModel(model, reward, n_past=P, action_dim=1, frame_shape=(3, S, S), tailor_mode=mode)


def _inputs(B: int = 2, N: int = 4, T: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, P, 3, S, S, generator=g), torch.rand(B, P - 1, 1, generator=g) * 4 - 2, \
        torch.rand(B, N, T, 1, generator=g) * 4 - 2


def test_imagine_shapes_untailored_matches_plain_rollout():
    wm = tiny_world_model()
    ctx, ca, seqs = _inputs()
    out = wm.imagine(ctx, ca, seqs, tailor=False)
    assert out.frames.shape == (2, 4, 3, 3, S, S) and out.rewards.shape == (2, 4, 3)
    # candidate (1, 2) alone through the predictor
    acts = torch.cat([ca[1:2], seqs[1:2, 2]], 1)
    ref = wm.predictor.rollout(ctx[1:2], acts, 3).pred
    torch.testing.assert_close(out.frames[1, 2], ref[0])
    r = -ref[0].mean((1, 2, 3)) - 0.1 * seqs[1, 2, :, 0] ** 2
    torch.testing.assert_close(out.rewards[1, 2], r)
    assert not out.frames.requires_grad


def test_shared_tailoring_changes_predictions_and_is_per_problem():
    wm = tiny_world_model()
    ctx, ca, seqs = _inputs()
    tailored = wm.imagine(ctx, ca, seqs, tailor=True)
    plain = wm.imagine(ctx, ca, seqs, tailor=False)
    assert (tailored.frames - plain.frames).abs().max() > 1e-4
    # problem 0 does not depend on problem 1 (tailoring is per example)
    alone = wm.imagine(ctx[:1], ca[:1], seqs[:1], tailor=True)
    torch.testing.assert_close(alone.frames[0], tailored.frames[0], atol=1e-5, rtol=1e-4)
    # identical candidates: sharing the mean candidate's adaptation == tailoring each candidate
    same = seqs[:, :1].expand(-1, 4, -1, -1)
    per = tiny_world_model(mode="per_candidate").imagine(ctx, ca, same, tailor=True)
    torch.testing.assert_close(wm.imagine(ctx, ca, same, tailor=True).frames, per.frames, atol=1e-5, rtol=1e-4)


def test_same_seed_same_rollouts_stochastic():
    wm = tiny_world_model(stochastic=True)
    ctx, ca, seqs = _inputs()

    def run(seed):
        return wm.imagine(ctx, ca, seqs, generator=torch.Generator().manual_seed(seed)).frames

    torch.testing.assert_close(run(1), run(1))
    assert (run(1) - run(2)).abs().max() > 1e-6


def test_imagine_rejects_bad_shapes_and_converts_uint8():
    wm = tiny_world_model(noether=False)
    ctx, ca, seqs = _inputs()
    with pytest.raises(UserError, match="action_seqs"):
        wm.imagine(ctx, ca, seqs[..., 0])
    with pytest.raises(UserError, match="context"):
        wm.imagine(ctx[:, :, :, :16], ca, seqs)
    u8 = tensor_to_obs(ctx)
    assert u8.shape == (2, P, S, S, 3) and u8.dtype == torch.uint8
    a = wm.imagine(u8, ca, seqs).frames
    b = wm.imagine(obs_to_tensor(u8), ca, seqs).frames
    torch.testing.assert_close(a, b)


def test_pixel_angle_estimate_on_real_frames():
    env = gymnasium.make("noether_rl/PixelPendulum-v0", size=32)
    errs = []
    for th in np.linspace(-3.0, 3.0, 13):
        obs, info = env.reset(options={"state": [th, 0.0]})
        est = pendulum_angle_from_frames(obs_to_tensor(obs[None]))[0]
        d = (float(est) - th + np.pi) % (2 * np.pi) - np.pi
        errs.append(abs(d))
    assert max(errs) < 0.15, errs


def test_reward_cnn_fits_recorded_rewards_and_round_trips(tiny_recording, tmp_path):
    model, summary = fit_reward(RewardFitConfig(data=str(tiny_recording), train=(0, 1), val=(2,), epochs=60,
                                                batch_size=16, lr=3e-3))
    assert summary["train_mse"] < 0.3 * summary["reward_var_train"], summary
    path = save_reward(tmp_path / "reward.pt", model, summary)
    again = load_reward(path)
    x = torch.rand(3, 3, S, S)
    torch.testing.assert_close(again(x, torch.zeros(3, 1), x), model(x, torch.zeros(3, 1), x))
    torch.save({"kind": "svg", "model": {}}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a reward model"):
        load_reward(tmp_path / "other.pt")


def test_prepare_once_then_score_many_matches_imagine_and_per_candidate():
    wm = tiny_world_model()
    ctx, ca, seqs = _inputs()
    # the shared preparation (tailored on the mean candidate) reproduces imagine exactly
    prep = wm.prepare(ctx, ca, 3, tailor=True, plan=seqs.mean(1))
    assert prep.tailored and prep.adapt is not None and prep.warm is not None
    torch.testing.assert_close(wm.imagine_prepared(prep, seqs).frames, wm.imagine(ctx, ca, seqs).frames)
    # a plan's own tailoring, shared with a candidate equal to it, equals tailoring that candidate alone
    plan = seqs[:, 1]
    prep = wm.prepare(ctx, ca, 3, tailor=True, plan=plan)
    alone = tiny_world_model(mode="per_candidate").imagine(ctx, ca, plan[:, None], tailor=True)
    torch.testing.assert_close(wm.imagine_prepared(prep, seqs).frames[:, 1], alone.frames[:, 0], atol=1e-5, rtol=1e-4)
    with pytest.raises(UserError, match="T=3"):
        wm.imagine_prepared(prep, seqs[:, :, :2])


def test_prepare_computes_the_warm_start_once_and_no_discarded_final_rollout():
    wm = tiny_world_model()
    ctx, ca, seqs = _inputs()
    calls = {"warm_start": 0, "rollout": 0}
    for name in calls:
        real = getattr(wm.predictor, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)

        setattr(wm.predictor, name, counted)
    prep = wm.prepare(ctx, ca, 3, tailor=True, plan=seqs.mean(1))
    assert prep.adapt is not None and prep.warm is not None
    assert calls == {"warm_start": 1, "rollout": 1}  # one warm start shared; the inner loss's rollout only
    wm.imagine_prepared(prep, seqs)
    assert calls == {"warm_start": 1, "rollout": 2}  # all candidates in one rollout from the same warm start


def test_inner_lr_override_is_used_and_learned_lr_is_read_once():
    torch.manual_seed(0)
    svg = SVG(SVGConfig(image_size=S, width=4, g_dim=8, rnn_size=16, rnn_layers=1, norm="layer"))
    net = NoetherNetwork(svg, NoetherEmbedding(EmbeddingConfig(image_size=S, emb_dim=8)),
                         NoetherConfig(learn_inner_lr=True))
    with torch.no_grad():
        net.log_inner_lr.fill_(np.log(0.5))
    reward = FunctionReward(lambda a, x: -x.mean((1, 2, 3)))
    kw = dict(n_past=P, action_dim=1, frame_shape=(3, S, S))
    assert WorldModel(net, reward, **kw).inner_lr == pytest.approx(0.5)
    ctx, ca, seqs = _inputs()
    zero = WorldModel(net, reward, inner_lr=0.0, **kw)  # an explicit lr wins over the learned one
    torch.testing.assert_close(zero.imagine(ctx, ca, seqs, tailor=True).frames,
                               zero.imagine(ctx, ca, seqs, tailor=False).frames)
    moved = WorldModel(net, reward, **kw).imagine(ctx, ca, seqs, tailor=True).frames
    assert (moved - zero.imagine(ctx, ca, seqs, tailor=False).frames).abs().max() > 1e-4


def test_bfloat16_and_channels_last_candidates_match_float32():
    ctx, ca, seqs = _inputs()
    ref = tiny_world_model().imagine(ctx, ca, seqs, tailor=True)
    cl = tiny_world_model()
    cl = WorldModel(cl.model, cl.reward, n_past=P, action_dim=1, frame_shape=(3, S, S), channels_last=True)
    torch.testing.assert_close(cl.imagine(ctx, ca, seqs, tailor=True).frames, ref.frames, atol=1e-5, rtol=1e-4)
    bf = tiny_world_model()
    bf.precision = "bfloat16"
    out = bf.imagine(ctx, ca, seqs, tailor=True)
    assert out.frames.dtype == torch.float32 and out.rewards.dtype == torch.float32
    err = (out.frames - ref.frames).abs().max()
    assert 0 < err < 0.05, err  # really in bfloat16, and close
    with pytest.raises(UserError, match="precision"):
        WorldModel(cl.model, cl.reward, n_past=P, action_dim=1, frame_shape=(3, S, S), precision="float16")


@pytest.mark.parametrize("stochastic", [False, True])
@pytest.mark.parametrize("adapt", ["hidden", "code"])
def test_tailor_adaptables_is_predicts_inner_loop(stochastic, adapt):
    """``NoetherNetwork.tailor_adaptables`` (used by ``WorldModel.prepare``) adapts exactly as ``predict`` does,
    with and without a warm start computed beforehand."""
    from dataclasses import replace

    net = tiny_world_model(stochastic=stochastic).network
    net.cfg = replace(net.cfg, adapt=adapt)
    ctx, ca, seqs = _inputs()
    acts = torch.cat([ca, seqs[:, 0]], 1)
    gens = [torch.Generator().manual_seed(5) for _ in range(3)]
    with torch.no_grad():
        ref = net.predict(ctx, acts, 3, generator=gens[0]).result.adapted
        plain = net.tailor_adaptables(ctx, acts, 3, generator=gens[1]).adapted
        warm = net.predictor.warm_start(ctx, acts, 3, kind=adapt, generator=gens[2])
        given = net.tailor_adaptables(ctx, acts, 3, generator=gens[2], warm=warm).adapted
    assert set(ref) == set(plain) == set(given) and ref
    for k in ref:
        assert torch.equal(ref[k], plain[k]) and torch.equal(ref[k], given[k]), k
