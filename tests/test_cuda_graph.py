"""WorldModel(cuda_graph=True): refused on CPU; the eager path unchanged; the graph bookkeeping (per-shape
capture, static buffers refreshed with copy_, outputs cloned, LRU eviction, eager fallback) run on CPU
through the EagerReplay backend (re-runs the function on the static buffers, like a graph replay)."""

from __future__ import annotations

import pytest
import torch
from test_agents_world_model import P, S, _inputs, tiny_world_model

from noether_rl.agents.cuda_graph import EagerReplay, GraphCache
from noether_rl.agents.mpc import MPCAgent, MPCConfig
from noether_rl.agents.planners import make_planner
from noether_rl.agents.world_model import WorldModel, _flatten_prep, _unflatten_prep
from noether_rl.errors import UserError


# -- GraphCache --------------------------------------------------------------------------------------------
def _double(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor]:
    return (2 * x + y,)


def test_graph_cache_copies_inputs_into_static_buffers_and_clones_outputs():
    backend = EagerReplay()
    cache = GraphCache(backend)
    x, y = torch.arange(4.0), torch.ones(4)
    (a,) = cache("f", _double, [x, y])
    assert cache.captures == 1 and cache.replays == 1
    torch.testing.assert_close(a, 2 * x + 1)
    x2 = torch.arange(4.0) * 10
    (b,) = cache("f", _double, [x2, y])  # same shape: replay on the refreshed static buffers, no capture
    assert cache.captures == 1 and cache.replays == 2 and len(cache) == 1
    torch.testing.assert_close(b, 2 * x2 + 1)
    torch.testing.assert_close(a, 2 * x + 1)  # the first result was a clone: not overwritten by the replay
    x2.fill_(-1)  # nor do the static buffers alias the caller's tensors
    (c,) = cache("f", _double, [torch.arange(4.0) * 10, y])
    torch.testing.assert_close(c, b)


def test_graph_cache_recaptures_per_shape_and_key_and_evicts_lru():
    cache = GraphCache(EagerReplay(), max_graphs=2)
    cache("f", _double, [torch.ones(3), torch.ones(3)])
    cache("f", _double, [torch.ones(5), torch.ones(5)])  # new shape
    assert cache.captures == 2 and len(cache) == 2
    cache("f", _double, [torch.ones(3), torch.ones(3)])  # known: replay (and now most recently used)
    assert cache.captures == 2
    cache("g", _double, [torch.ones(3), torch.ones(3)])  # new key, evicts the 5-graph (least recent)
    assert cache.captures == 3 and len(cache) == 2
    cache("f", _double, [torch.ones(3), torch.ones(3)])
    assert cache.captures == 3
    cache("f", _double, [torch.ones(5), torch.ones(5)])
    assert cache.captures == 4
    cache("f", _double, [torch.ones(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)])  # dtype
    assert cache.captures == 5
    cache.clear()
    assert len(cache) == 0


# -- WorldModel --------------------------------------------------------------------------------------------
def test_cuda_graph_is_refused_on_cpu():
    wm = tiny_world_model()
    with pytest.raises(UserError, match="CUDA device"):
        wm.use_cuda_graph(True)
    with pytest.raises(UserError, match="CUDA device"):
        WorldModel(wm.model, wm.reward, n_past=P, action_dim=1, frame_shape=(3, S, S), cuda_graph=True)
    assert not wm.cuda_graph and wm.graph_stats()["enabled"] is False


def test_flatten_prep_round_trips():
    wm = tiny_world_model()
    ctx, ca, _ = _inputs()
    for tailor in (False, True):
        prep = wm.prepare(ctx, ca, 3, tailor=tailor)
        flat, spec = _flatten_prep(prep)
        back = _unflatten_prep(flat, spec)
        assert back.horizon == prep.horizon and back.tailored == prep.tailored
        assert (back.adapt is None) == (prep.adapt is None) and back.warm is not None
        f2, s2 = _flatten_prep(back)
        assert s2 == spec and all(a is b for a, b in zip(f2, flat, strict=True))
        hash(spec)


@pytest.mark.parametrize("tailor", [False, True])
@pytest.mark.parametrize("stochastic", [False, True])
def test_graphed_imagine_equals_eager_and_reuses_its_graph(tailor, stochastic):
    wm = tiny_world_model(stochastic=stochastic)
    ctx, ca, seqs = _inputs(N=4, T=3)
    prep = wm.prepare(ctx, ca, 3, tailor=tailor)
    torch.manual_seed(1)
    eager = wm.imagine_prepared(prep, seqs)
    wm.use_cuda_graph(True, backend=EagerReplay())
    torch.manual_seed(1)  # EagerReplay: the first replay draws the same numbers as the eager call
    g1 = wm.imagine_prepared(prep, seqs)
    if not stochastic:
        torch.testing.assert_close(g1.frames, eager.frames, rtol=0, atol=0)
        torch.testing.assert_close(g1.rewards, eager.rewards, rtol=0, atol=0)
    # new candidates and a new preparation (another context) with the same shapes: replayed, right values
    ctx2, ca2, seqs2 = _inputs(N=4, T=3, seed=5)
    prep2 = wm.prepare(ctx2, ca2, 3, tailor=tailor)
    g2 = wm.imagine_prepared(prep2, seqs2)
    assert wm.graph_stats() == {"enabled": True, "failed": False, "graphs": 1, "captures": 1, "replays": 2}
    wm.use_cuda_graph(False)
    e2 = wm.imagine_prepared(prep2, seqs2)
    if not stochastic:
        torch.testing.assert_close(g2.frames, e2.frames, rtol=0, atol=0)
        torch.testing.assert_close(g2.rewards, e2.rewards, rtol=0, atol=0)
    assert g2.frames.shape == e2.frames.shape and torch.isfinite(g2.rewards).all()


def test_graphed_imagine_recaptures_when_the_shape_changes():
    wm = tiny_world_model()
    wm.use_cuda_graph(True, backend=EagerReplay())
    ctx, ca, _ = _inputs()
    prep = wm.prepare(ctx, ca, 3, tailor=True)
    for N in (4, 2, 4):
        seqs = _inputs(N=N)[2]
        out = wm.imagine_prepared(prep, seqs)
        assert out.rewards.shape == (2, N, 3)
    untailored = wm.prepare(ctx, ca, 3, tailor=False)  # no adapted tensors: another structure, another graph
    wm.imagine_prepared(untailored, _inputs(N=4)[2])
    wm.precision = "bfloat16"  # another precision, another graph
    wm.imagine_prepared(untailored, _inputs(N=4)[2])
    s = wm.graph_stats()
    assert (s["captures"], s["replays"], s["graphs"]) == (4, 5, 4)


def test_graphed_stochastic_predictor_refuses_an_explicit_generator():
    wm = tiny_world_model(stochastic=True)
    wm.use_cuda_graph(True, backend=EagerReplay())
    ctx, ca, seqs = _inputs()
    prep = wm.prepare(ctx, ca, 3, tailor=False)
    with pytest.raises(UserError, match="generator"):
        wm.imagine_prepared(prep, seqs, generator=torch.Generator().manual_seed(0))
    det = tiny_world_model(stochastic=False)  # a deterministic predictor never samples: accepted
    det.use_cuda_graph(True, backend=EagerReplay())
    det.imagine_prepared(det.prepare(ctx, ca, 3), seqs, generator=torch.Generator().manual_seed(0))


def test_failed_capture_falls_back_to_eager_with_one_warning():
    class Broken:
        def capture(self, fn, static_inputs):
            raise RuntimeError("operation not permitted when stream is capturing\nmore")

    wm = tiny_world_model()
    ctx, ca, seqs = _inputs()
    prep = wm.prepare(ctx, ca, 3)
    eager = wm.imagine_prepared(prep, seqs)
    wm.use_cuda_graph(True, backend=Broken())
    with pytest.warns(RuntimeWarning, match="capture/replay .* failed"):
        out = wm.imagine_prepared(prep, seqs)
    torch.testing.assert_close(out.rewards, eager.rewards, rtol=0, atol=0)
    assert not wm.cuda_graph and wm.graph_stats()["failed"]
    wm.imagine_prepared(prep, seqs)  # eager now, no second warning needed


def test_mpc_plans_the_same_with_graphs():
    wm = tiny_world_model()

    def plan() -> torch.Tensor:
        planner = make_planner("icem", 3, [-2.0], [2.0], population=8, iterations=2, seed=0)  # decaying N
        agent = MPCAgent(wm, planner, MPCConfig(tailor=True))
        obs = (torch.rand(2, S, S, 3, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8).numpy()
        a1, _ = agent.predict(obs)
        a2, _ = agent.predict(obs)
        return torch.as_tensor(a1), torch.as_tensor(a2)

    eager = plan()
    wm.use_cuda_graph(True, backend=EagerReplay())
    graphed = plan()
    for e, g in zip(eager, graphed, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=0)
    s = wm.graph_stats()
    # iCEM's candidate counts: plan 1: 8 + mean, 6 + mean + 1 kept elite; plan 2: 8 + 1 + 1, 6 + 1 + 1
    assert s["captures"] == 3 and s["replays"] == 4


# -- on a CUDA GPU (skipped elsewhere): real torch.cuda.CUDAGraph capture ------------------------------------
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _cuda_world_model(stochastic: bool = False, cuda_graph: bool = False) -> WorldModel:
    from noether_rl.agents.reward import RewardCNN, RewardConfig
    from noether_rl.models import SVG, EmbeddingConfig, NoetherEmbedding, SVGConfig
    from noether_rl.noether import NoetherConfig, NoetherNetwork

    torch.manual_seed(0)
    svg = SVG(SVGConfig(image_size=S, width=4, g_dim=8, rnn_size=16, rnn_layers=1, norm="layer", stochastic=stochastic,
                        z_dim=4))
    net = NoetherNetwork(svg, NoetherEmbedding(EmbeddingConfig(image_size=S, emb_dim=8)), NoetherConfig())
    reward = RewardCNN(RewardConfig(image_size=S, width=4))
    return WorldModel(net.cuda(), reward.cuda(), n_past=P, action_dim=1, frame_shape=(3, S, S), cuda_graph=cuda_graph)


@needs_cuda
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("tailor", [False, True])
def test_cuda_graph_replays_match_eager_on_new_inputs(tailor, precision):
    wm = _cuda_world_model()
    wm.precision = precision
    sets = [[t.cuda() for t in _inputs(N=4, T=3, seed=s)] for s in (0, 5)]
    preps = [wm.prepare(ctx, ca, 3, tailor=tailor) for ctx, ca, _ in sets]
    eager = [wm.imagine_prepared(p, s[2]) for p, s in zip(preps, sets, strict=True)]
    wm.use_cuda_graph(True)
    graphed = [wm.imagine_prepared(p, s[2]) for p, s in zip(preps, sets, strict=True)]
    graphed.append(wm.imagine_prepared(preps[0], sets[0][2]))  # back to the first inputs
    assert wm.graph_stats() == {"enabled": True, "failed": False, "graphs": 1, "captures": 1, "replays": 3}
    tol = 1e-5 if precision == "float32" else 2e-2
    for g, e in zip(graphed, [*eager, eager[0]], strict=True):
        torch.testing.assert_close(g.rewards, e.rewards, rtol=tol, atol=tol)
        torch.testing.assert_close(g.frames, e.frames, rtol=tol, atol=tol)


@needs_cuda
def test_cuda_graph_stochastic_predictor_draws_fresh_noise_per_replay():
    wm = _cuda_world_model(stochastic=True, cuda_graph=True)
    ctx, ca, seqs = (t.cuda() for t in _inputs(N=4, T=3))
    prep = wm.prepare(ctx, ca, 3, tailor=False)
    a, b = wm.imagine_prepared(prep, seqs), wm.imagine_prepared(prep, seqs)
    assert wm.graph_stats()["replays"] == 2 and torch.isfinite(a.frames).all()
    assert not torch.equal(a.frames, b.frames)


@needs_cuda
def test_cuda_graph_mpc_plans_like_eager():
    wm = _cuda_world_model()
    obs = (torch.rand(1, S, S, 3, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8).numpy()
    out = []
    for on in (False, True):
        wm.use_cuda_graph(on)
        planner = make_planner("cem", 3, [-2.0], [2.0], population=16, iterations=2, seed=0, device="cuda")
        agent = MPCAgent(wm, planner, MPCConfig(tailor=True))
        out.append([agent.predict(obs)[0], agent.predict(obs, episode_start=[False])[0]])
    torch.testing.assert_close(torch.as_tensor(out[1]), torch.as_tensor(out[0]), rtol=1e-5, atol=1e-5)
    assert wm.graph_stats()["captures"] == 1
