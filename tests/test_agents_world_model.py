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
    # numpy arrays (e.g. frames straight from gymnasium) are accepted like tensors
    c = wm.imagine(u8.numpy(), ca.numpy(), seqs.numpy()).frames
    torch.testing.assert_close(a, c)
    flipped = u8.numpy()[:, :, :, ::-1]  # negative strides (np.flip) are copied, not refused
    assert wm.imagine(flipped, ca.numpy(), seqs.numpy()).frames.shape == a.shape
    with pytest.raises(UserError, match="context"):
        wm.prepare(u8.numpy()[:, :, :16], ca.numpy(), 3)


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


def test_default_reward_model_is_reused_only_when_fit_with_the_same_settings(tiny_recording, tmp_path):
    import shutil
    from dataclasses import replace

    from noether_rl.agents.runs import RewardSpec, build_reward
    from noether_rl.training.config import DataConfig, TrainConfig

    cpu, out = torch.device("cpu"), tmp_path / "run"
    cfg = TrainConfig(out=str(tmp_path / "t"), data=DataConfig(root=str(tiny_recording), train_episodes=2))
    spec = RewardSpec(epochs=1, val_episodes=1)
    assert not build_reward(spec, cfg, cpu, out)[1]["reused"] and (out / "reward.pt").is_file()
    info = build_reward(spec, cfg, cpu, out)[1]
    assert info["reused"] and "settings_unknown" not in info
    moved = shutil.copytree(tiny_recording, tmp_path / "moved")  # same episodes elsewhere: still the same fit
    assert build_reward(replace(spec, data=str(moved)), cfg, cpu, out)[1]["reused"]
    with pytest.raises(UserError, match=r"other settings \(epochs differ\); delete it to refit"):
        build_reward(replace(spec, epochs=2), cfg, cpu, out)
    with pytest.raises(UserError, match="episodes_sha256, train, val differ"):
        build_reward(spec, replace(cfg, data=replace(cfg.data, train_episodes=1)), cpu, out)
    # given explicitly, the file is used as is
    assert build_reward(replace(spec, epochs=2, path=str(out / "reward.pt")), cfg, cpu, out)[1]["reused"]
    # a reward.pt saved before the settings were stored is still reused, and says so
    ckpt = torch.load(out / "reward.pt", weights_only=True)
    del ckpt["summary"]["fit_settings"]
    torch.save(ckpt, out / "reward.pt")
    info = build_reward(replace(spec, epochs=2), cfg, cpu, out)[1]
    assert info["reused"] and info["settings_unknown"] is True


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
    base = tiny_world_model()  # channels-last by default on the CPU: the reference is built contiguous
    ref_model = base.model.to(memory_format=torch.contiguous_format)
    ref_wm = WorldModel(ref_model, base.reward, n_past=P, action_dim=1, frame_shape=(3, S, S), channels_last=False)
    assert all(p.is_contiguous() for p in ref_wm.model.parameters())
    ref = ref_wm.imagine(ctx, ca, seqs, tailor=True)
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


# -- the CPU hot path: same frames and rewards as the reference computations (float tolerance) ---------------


@pytest.mark.parametrize("size", [32, 64])  # 64: the adaptive pooling is not an identity
@pytest.mark.parametrize("channels_last", [False, True])
def test_reward_cnn_score_sequence_matches_forward_on_pairs(monkeypatch, size, channels_last):
    import noether_rl.agents.reward as reward_mod
    from noether_rl.agents.reward import RewardCNN, RewardConfig

    torch.manual_seed(0)
    m = RewardCNN(RewardConfig(image_size=size, width=4, hidden=8)).eval()
    m.mean.fill_(0.3)
    m.std.fill_(2.0)
    if channels_last:
        m.to(memory_format=torch.channels_last)
    M, T = 3, 7
    first, frames, acts = torch.rand(M, 3, size, size), torch.rand(M, T, 3, size, size), torch.randn(M, T, 1)
    prev = torch.cat([first[:, None], frames[:, :-1]], 1)
    with torch.no_grad():
        ref = torch.stack([m(prev[:, t], acts[:, t], frames[:, t]) for t in range(T)], 1)  # [M, T]
        h = m.convs(torch.cat([prev.flatten(0, 1), frames.flatten(0, 1)], 1)).flatten(1)  # the original forward
        orig = m.head(torch.cat([h, acts.flatten(0, 1)], 1))[:, 0] * m.std + m.mean
        torch.testing.assert_close(ref, orig.view(M, T), atol=1e-5, rtol=1e-5)
        for rows in (T, 2 * T, 512):  # one sequence per chunk, two (chunks of 2 and 1), all at once
            monkeypatch.setattr(reward_mod, "_SEQ_ROWS", rows)
            torch.testing.assert_close(m.score_sequence(first, frames, acts), ref, atol=1e-5, rtol=1e-5)
    # the pair path still trains (in-place ReLUs are autograd-safe)
    m.normalized(prev[:, 0], acts[:, 0], frames[:, 0]).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


def test_decoder_phase_deconv_matches_transposed_conv(monkeypatch):
    import torch.nn.functional as F

    import noether_rl.models.svg as svg_mod

    torch.manual_seed(0)
    for ci, co, h, w in [(16, 3, 16, 16), (5, 2, 3, 6), (8, 32, 4, 4)]:
        x, wt, b = torch.randn(4, ci, h, w), torch.randn(ci, co, 4, 4), torch.randn(co)
        ref = F.conv_transpose2d(x, wt, b, 2, 1)
        torch.testing.assert_close(svg_mod._deconv_k4s2_phases(x, wt, b), ref, atol=1e-4, rtol=1e-5)
        xc, wc = x.contiguous(memory_format=torch.channels_last), wt.contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(svg_mod._deconv_k4s2_phases(xc, wc, None), ref - b.view(1, -1, 1, 1),
                                   atol=1e-4, rtol=1e-5)
    # in the decoder: the split path with phases == without == the plain concat forward
    model = SVG(SVGConfig(image_size=S, width=4, g_dim=8, rnn_size=16, rnn_layers=1, norm="layer")).eval()
    assert svg_mod._phases_apply(model.decoder.levels[-1][0].conv)
    g, skips = torch.randn(6, 8), [torch.randn(2, 1, c, s, s) for c, s in [(4, 16), (8, 8), (16, 4)]]
    with torch.no_grad():
        outs = model.decoder.skip_parts(skips)
        fast = model.decoder.forward_split(g, outs)
        monkeypatch.setattr(svg_mod, "_PHASE_MAX_OUT", 0)
        slow = model.decoder.forward_split(g, outs)
        plain = model.decoder(g, [s[:, 0].repeat_interleave(3, 0) for s in skips])
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(fast, plain, atol=1e-6, rtol=1e-5)


def test_optimised_imagine_matches_reference_path(monkeypatch):
    """The default CPU path (channels-last weights, phase deconv, RewardCNN.score_sequence) returns the
    frames and rewards of the reference path (contiguous weights, transposed conv, reward on built pairs)."""
    import noether_rl.models.svg as svg_mod
    from noether_rl.agents.reward import RewardCNN, RewardConfig

    ctx, ca, seqs = _inputs(B=2, N=5, T=4)
    fast = tiny_world_model()
    torch.manual_seed(1)
    fast.reward = RewardCNN(RewardConfig(image_size=S, width=4, hidden=8)).eval()
    assert fast.predictor.encoder.levels[0][0].conv.weight.is_contiguous(memory_format=torch.channels_last)
    out = fast.imagine(ctx, ca, seqs, tailor=True)

    slow = tiny_world_model()
    slow.model.to(memory_format=torch.contiguous_format)
    slow = WorldModel(slow.model, lambda p, a, n: fast.reward(p, a, n), n_past=P, action_dim=1,
                      frame_shape=(3, S, S), channels_last=False)
    assert slow.predictor.encoder.levels[0][0].conv.weight.is_contiguous()
    monkeypatch.setattr(svg_mod, "_PHASE_MAX_OUT", 0)
    ref = slow.imagine(ctx, ca, seqs, tailor=True)
    torch.testing.assert_close(out.frames, ref.frames, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.rewards, ref.rewards, atol=1e-5, rtol=1e-4)
    assert (out.rewards.std() > 0) and (out.frames[:, 0] - out.frames[:, 1]).abs().max() > 1e-4  # not trivial


def test_cpu_world_model_keeps_the_heap(monkeypatch):
    import ctypes
    import sys

    import noether_rl.agents.world_model as wm_mod

    if not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "mallopt"):
        pytest.skip("glibc only")
    monkeypatch.setattr(wm_mod, "_HEAP_KEPT", False)
    monkeypatch.setenv("NOETHER_RL_KEEP_CPU_HEAP", "0")  # the opt-out
    tiny_world_model()
    assert not wm_mod._HEAP_KEPT and not wm_mod.keep_cpu_heap()
    monkeypatch.delenv("NOETHER_RL_KEEP_CPU_HEAP")
    tiny_world_model()  # on CPU: sets the allocator once
    assert wm_mod._HEAP_KEPT and wm_mod.keep_cpu_heap()


@pytest.mark.parametrize("encoder,size", [("dcgan", 32), ("dcgan", 64), ("vgg", 64)])
def test_svg_whole_map_convs_as_matmuls_match_the_convs(encoder, size):
    """The decoder head (transposed conv of the 1x1 code) and the encoder's last conv (covering the whole
    4x4 map) run as matmuls: same values as the conv modules, gradients included."""
    torch.manual_seed(0)
    model = SVG(SVGConfig(image_size=size, encoder=encoder, width=4, g_dim=8, rnn_size=16, rnn_layers=1,
                          norm="layer"))
    x = torch.rand(3, 3, size, size)
    code, skips = model.encoder(x)
    h = skips[-1] if encoder == "dcgan" else torch.nn.functional.max_pool2d(skips[-1], 2)
    ref = model.encoder.last(h).flatten(1)
    torch.testing.assert_close(code, ref, atol=1e-6, rtol=1e-5)
    g = torch.randn(3, 8)
    torch.testing.assert_close(model.decoder._start(g, None), model.decoder.head(g.view(3, 8, 1, 1)),
                               atol=1e-6, rtol=1e-5)
    (code.sum() + model.decoder._start(g, None).sum()).backward()
    assert model.encoder.last.conv.weight.grad.abs().sum() > 0 and model.decoder.head.conv.weight.grad.abs().sum() > 0


def test_world_model_accepts_only_svg_and_noether_checkpoints():
    from types import SimpleNamespace

    with pytest.raises(UserError, match="'svg_adapted' checkpoint; a world model needs an SVG or Noether"):
        WorldModel.check_loaded(SimpleNamespace(kind="svg_adapted", path="x.pt"))
    for kind in ("svg", "noether"):
        WorldModel.check_loaded(SimpleNamespace(kind=kind, path="x.pt"))
