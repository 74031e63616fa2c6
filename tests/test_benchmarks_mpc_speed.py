"""benchmarks/mpc_speed.py: each timed mode says whether CUDA graphs ran (per_candidate never uses them). CPU,
through the EagerReplay backend (re-runs the captured function: checks the bookkeeping, times nothing real)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from noether_rl.agents.cuda_graph import EagerReplay
from noether_rl.agents.reward import FunctionReward
from noether_rl.agents.world_model import WorldModel
from noether_rl.models import SVG, EmbeddingConfig, NoetherEmbedding, SVGConfig
from noether_rl.noether import NoetherConfig, NoetherNetwork

S = 32


def _mpc_speed():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "mpc_speed.py"
    spec = importlib.util.spec_from_file_location("mpc_speed_under_test", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_per_mode_cuda_graph_flag_says_per_candidate_runs_eagerly():
    mpc_speed = _mpc_speed()
    torch.manual_seed(0)
    svg = SVG(SVGConfig(image_size=S, width=4, g_dim=8, rnn_size=16, rnn_layers=1, norm="layer"))
    net = NoetherNetwork(svg, NoetherEmbedding(EmbeddingConfig(image_size=S, emb_dim=8)), NoetherConfig())
    wm = WorldModel(net, FunctionReward(lambda a, x: -x.mean((1, 2, 3))), n_past=2, action_dim=1,
                    frame_shape=(3, S, S))
    wm.use_cuda_graph(True, backend=EagerReplay())
    device = torch.device("cpu")
    rows = {m: mpc_speed.time_mode(wm, m, 4, 2, 1, 1, device)
            for m in ("untailored", "shared", "per_iteration", "per_candidate")}
    assert {m: r["cuda_graph"] for m, r in rows.items()} == \
        {"untailored": True, "shared": True, "per_iteration": True, "per_candidate": False}
    assert rows["per_candidate"]["graph_replays"] == 0 and rows["shared"]["graph_replays"] > 0
    wm.use_cuda_graph(False)  # graphs off: no mode claims them
    assert not mpc_speed.time_mode(wm, "shared", 4, 2, 1, 1, device)["cuda_graph"]
