"""WorldModel.from_loaded / load_world_model: the one checkpoint-kind rule and the inner-loop overrides
(behaving as the CLI's load_world_model did before it delegated to from_loaded)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from noether_rl.agents import runs
from noether_rl.agents.reward import FunctionReward
from noether_rl.agents.world_model import WorldModel
from noether_rl.errors import UserError
from noether_rl.models import SVG, EmbeddingConfig, NoetherEmbedding, SVGConfig
from noether_rl.noether import NoetherConfig, NoetherNetwork
from noether_rl.training.config import DataConfig, TrainConfig
from noether_rl.training.loading import LoadedModel

S = 32
REWARD = FunctionReward(lambda a, x: -x.mean((1, 2, 3)))


def _loaded(kind: str = "noether", n_past: int = 3) -> LoadedModel:
    torch.manual_seed(0)
    svg = SVG(SVGConfig(image_size=S, width=4, g_dim=8, rnn_size=16, rnn_layers=1, norm="layer"))
    module = NoetherNetwork(svg, NoetherEmbedding(EmbeddingConfig(image_size=S, emb_dim=8)), NoetherConfig()) \
        if kind == "noether" else svg
    return LoadedModel(kind=kind, config=TrainConfig(out="", data=DataConfig(n_past=n_past)), module=module.eval(),
                       epoch=1, path="m.pt")


def _old_rule(loaded: LoadedModel, inner_steps: int | None, inner_lr: float | None) -> WorldModel:
    """load_world_model before 2340806: defaults first, then the steps replaced."""
    c = loaded.svg.cfg
    wm = WorldModel(loaded.module, REWARD, n_past=loaded.config.data.n_past, action_dim=c.action_dim,
                    frame_shape=(c.channels, c.image_size, c.image_size), tailor_cfg=None, inner_lr=inner_lr)
    if wm.tailor_cfg is not None and inner_steps is not None:
        wm.tailor_cfg = replace(wm.tailor_cfg, steps=inner_steps)
    return wm


@pytest.mark.parametrize("kind", ["noether", "svg"])
@pytest.mark.parametrize("inner_steps, inner_lr", [(None, None), (3, None), (None, 0.05), (0, 0.5)])
def test_from_loaded_matches_the_old_load_rule(kind, inner_steps, inner_lr):
    loaded = _loaded(kind)
    new = WorldModel.from_loaded(loaded, REWARD, inner_steps=inner_steps, inner_lr=inner_lr)
    old = _old_rule(loaded, inner_steps, inner_lr)
    assert (new.n_past, new.action_dim, new.frame_shape) == (old.n_past, old.action_dim, old.frame_shape) == \
        (3, 1, (3, S, S))
    assert new.tailor_cfg == old.tailor_cfg and new.inner_lr == old.inner_lr and new.can_tailor == old.can_tailor
    if kind == "noether":
        assert new.tailor_cfg is not None and new.tailor_cfg.order == "first"
        assert new.tailor_cfg.steps == (NoetherConfig().tailor.steps if inner_steps is None else inner_steps)
        assert new.inner_lr == pytest.approx(NoetherConfig().tailor.lr if inner_lr is None else inner_lr)
        assert new.can_tailor == (inner_steps != 0)
    else:
        assert new.tailor_cfg is None and new.inner_lr is None and not new.can_tailor
    assert WorldModel.from_loaded(loaded, REWARD, n_past=2).n_past == 2  # an explicit context length wins


def test_load_world_model_refuses_other_kinds_before_fitting_a_reward(monkeypatch, tmp_path):
    import noether_rl.training.loading as loading

    monkeypatch.setattr(loading, "load_model", lambda path, device: replace(_loaded("svg"), kind="svg_adapted",
                                                                            path=str(path)))

    def no_fit(*a, **k):
        raise AssertionError("a reward model was built for a checkpoint the world model refuses")

    monkeypatch.setattr(runs, "build_reward", no_fit)
    with pytest.raises(UserError, match=r"ctl\.pt is a 'svg_adapted' checkpoint; a world model needs an SVG or"):
        runs.load_world_model("ctl.pt", runs.RewardSpec(), torch.device("cpu"), tmp_path)
