"""Reproduce the real-video ramp result (paper Sec. 4.2, Fig. 4): SVG-LP vs a Noether Network with
conditional-normalisation (CN) tailoring, on Physics 101 ramp videos or the synthetic ramp stand-in.

Data
- ``--data DIR`` (Physics 101): the paper's protocol (:mod:`noether_rl.data.physics101`: 20-degree ramp,
  Kinect_RGB_1, 15 fps, middle 22 frames, centre crop, 80/20 split, a validation share carved from the
  training 80 %), written once as a recording under ``<out>/data`` (:func:`noether_rl.data.video.export_recording`;
  a seeded half of the training clips stored flipped, as in the paper).
- ``--synthetic``: ``noether_rl/SyntheticRamp-v0`` recorded with the no-op policy (22 frames at 15 fps),
  episodes split train / val / test in recording order.

Per seed (paper appendix): SVG-LP (stochastic) trained ``svg_epochs`` ("SVG"); the same continued for
``extra_epochs`` ("SVG (more steps)", the compute-matched control); the Noether Network initialised from
"SVG" and meta-trained ``extra_epochs`` with one inner SGD step on the CN gamma/beta after every norm layer of
encoder and decoder against loss 2(b), g_phi on two stacked frames -> 64-d, outer Adam on g_phi and the
model (CN parameters are per-example adaptables, not trained weights). Conditioned on 2 frames, 20
predicted. Tailoring uses the same noise samples before and after the step (``NoetherNetwork.predict``).

Analysis: the first seed's g_phi embeddings of the test frames are analysed as in the paper's Fig. 5 (PCA
variance table + Grad-CAM grid under ``<out>/analysis``; :mod:`noether_rl.eval.analysis`).

Evaluation: every model on the same seeded subset of test windows (one per test episode/sequence);
per-step MSE / PSNR / SSIM (LPIPS with ``lpips=True`` when its weights are installed, else noted); the
verdict rows are paired differences Noether - control pooled over seeds with standard errors over
sequences (:func:`noether_rl.eval.stats.compare`). Nothing is selected on test windows: all settings are
fixed by the scale below.

Scales
- ``paper``: 128 x 128, VGG encoder/decoder, LSTM 2 x 256, batch 16; for a GPU (paper: 400 epochs).
- ``small``: 64 x 64, DCGAN encoder/decoder (width 16), LSTM 1 x 128, for 2 CPU cores.
- ``tiny``: 32 x 32, a smoke test of the whole recipe in about a minute.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from noether_rl.errors import UserError


@dataclass(frozen=True)
class RampScale:
    size: int
    encoder: str
    width: int
    g_dim: int
    rnn_size: int
    rnn_layers: int
    svg_epochs: int
    extra_epochs: int
    batch_size: int
    episodes: int  # synthetic episodes (train + val + test)
    train_episodes: int  # synthetic
    val_episodes: int  # synthetic
    eval_windows: int = 256
    # The inner step: chosen on the VALIDATION sequences of the synthetic ramp at the small scale
    # (benchmarks/ramp_step_selection.py, 3 seeds, GPU): normalized 0.1 / 0.3 / 1.0 and the paper's plain SGD
    # 1e-4 -> normalized 0.3 had the lowest validation MSE (see SELECTION). The paper scale keeps it (untested).
    inner_lr: float = 0.3
    step_rule: str = "normalized"
    emb_dim: int = 64
    emb_lr: float = 1e-3
    norm: str = "layer"
    occluder_prob: float = 0.0


SCALES: dict[str, RampScale] = {
    "paper": RampScale(size=128, encoder="vgg", width=64, g_dim=128, rnn_size=256, rnn_layers=2, svg_epochs=200,
                       extra_epochs=200, batch_size=16, episodes=1000, train_episodes=700, val_episodes=100,
                       eval_windows=1024),
    "small": RampScale(size=64, encoder="dcgan", width=16, g_dim=64, rnn_size=128, rnn_layers=1, svg_epochs=30,
                       extra_epochs=4, batch_size=16, episodes=500, train_episodes=300, val_episodes=50),
    "tiny": RampScale(size=32, encoder="dcgan", width=4, g_dim=16, rnn_size=32, rnn_layers=1, svg_epochs=1,
                      extra_epochs=1, batch_size=8, episodes=24, train_episodes=12, val_episodes=4, eval_windows=8,
                      emb_dim=16),
}

SELECTION = ("every setting is fixed by the scale; the inner step (normalized, lr 0.3) was chosen on the synthetic "
             "ramp's validation sequences (small scale, 3 seeds: benchmarks/ramp_step_selection.py), never on test")
NAMES = {"svg": "SVG", "svg_more": "SVG (more steps)", "noether": "Noether"}
N_PAST, N_FUTURE = 2, 20


@dataclass(frozen=True)
class RampVideoConfig:
    out: str
    data: str | None = None  # a Physics 101 folder; None = synthetic
    synthetic: bool = False
    scale: str = "small"
    seeds: tuple[int, ...] = (0, 1, 2)
    device: str = "auto"
    lpips: bool = False
    progress: bool = True
    cache_dir: str | None = None  # decoded Physics 101 videos (default <out>/video_cache)
    overrides: dict[str, Any] = field(default_factory=dict)  # RampScale fields to change

    @property
    def spec(self) -> RampScale:
        if self.scale not in SCALES:
            raise UserError(f"unknown scale {self.scale!r}; choose one of {sorted(SCALES)}")
        bad = sorted(set(self.overrides) - set(RampScale.__dataclass_fields__))
        if bad:
            raise UserError(f"unknown scale fields {bad}")
        return replace(SCALES[self.scale], **self.overrides)


def _data(cfg: RampVideoConfig, spec: RampScale) -> tuple[Path, int, int, dict[str, Any]]:
    """(recording root, train episodes, val episodes, provenance); recorded / exported under ``<out>/data``."""
    root = Path(cfg.out) / "data"
    if cfg.synthetic:
        from noether_rl.envs import SYNTHETIC_RAMP_ID
        from noether_rl.recorders import RecordConfig, record

        if spec.train_episodes + spec.val_episodes >= spec.episodes:
            raise UserError("the synthetic scale leaves no test episodes")
        record(RecordConfig(env_id=SYNTHETIC_RAMP_ID, policy="zero", episodes=spec.episodes, steps=N_PAST + N_FUTURE - 1,
                            size=spec.size, seed=0, out=root, num_envs=2, preview=True, progress=cfg.progress))
        return root, spec.train_episodes, spec.val_episodes, {"source": "synthetic", "env_id": SYNTHETIC_RAMP_ID,
                                                              "episodes": spec.episodes}
    from noether_rl.data.physics101 import Physics101Config, load_physics101_ramp
    from noether_rl.data.video import export_recording

    p = Physics101Config(size=spec.size, num_frames=N_PAST + N_FUTURE, val_fraction=0.1)
    cache = cfg.cache_dir or str(Path(cfg.out) / "video_cache")
    videos = load_physics101_ramp(cfg.data, p, cache_dir=cache, progress=cfg.progress)
    counts = export_recording(videos, root, seed=0)
    return root, counts["train_episodes"], counts["val_episodes"], {"source": "physics101", "protocol": asdict(p),
                                                                    **videos.summary()}


def _configs(cfg: RampVideoConfig, spec: RampScale, root: Path, train_eps: int, val_eps: int, seed: int):
    from noether_rl.models import EmbeddingConfig, SVGConfig
    from noether_rl.noether import NoetherConfig
    from noether_rl.tailoring import TailorConfig
    from noether_rl.training import DataConfig, TrainConfig

    run = Path(cfg.out) / f"seed{seed}"
    data = DataConfig(root=str(root), n_past=N_PAST, n_future=N_FUTURE, train_episodes=train_eps,
                      val_episodes=val_eps, stride=1)
    model = SVGConfig(image_size=spec.size, encoder=spec.encoder, width=spec.width, g_dim=spec.g_dim,
                      rnn_size=spec.rnn_size, rnn_layers=spec.rnn_layers, stochastic=True, z_dim=64, norm=spec.norm)
    svg = TrainConfig(out=str(run / "svg"), data=data, model=model, epochs=spec.svg_epochs,
                      batch_size=spec.batch_size, seed=seed, device=cfg.device, progress=cfg.progress,
                      tensorboard=False, val_windows=0)
    svg_ckpt = str(run / "svg" / "last.pt")
    more = replace(svg, out=str(run / "svg_more"), init_from=svg_ckpt, epochs=spec.extra_epochs)
    noether = NoetherConfig(tailor=TailorConfig(steps=1, lr=spec.inner_lr, step_rule=spec.step_rule, order="second"),
                            adapt="cn", form="b")
    meta = replace(svg, out=str(run / "noether"), noether=noether, init_from=svg_ckpt, train_predictor=True,
                   epochs=spec.extra_epochs, emb_lr=spec.emb_lr,
                   embedding=EmbeddingConfig(kind="conv", channels=3, image_size=spec.size, emb_dim=spec.emb_dim))
    return svg, more, meta


def run_ramp_video(cfg: RampVideoConfig) -> dict[str, Any]:
    """Run the recipe (reruns resume every finished step); returns and writes ``<out>/results.json``."""
    from noether_rl.eval import plot_all, write_results
    from noether_rl.eval.stats import compare, load_scores, pool_seeds
    from noether_rl.experiments.evaluation import EvalConfig, evaluate
    from noether_rl.training import train

    if cfg.synthetic == (cfg.data is not None):
        raise UserError("give exactly one of --data DIR (Physics 101) or --synthetic")
    if not cfg.seeds:
        raise UserError("give at least one seed")
    spec = cfg.spec
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    walls: dict[str, Any] = {}
    t = time.perf_counter()
    root, train_eps, val_eps, source = _data(cfg, spec)
    walls["data"] = time.perf_counter() - t
    per_seed: dict[str, Any] = {}
    runs = []
    for k, seed in enumerate(cfg.seeds):
        wall: dict[str, float] = {}
        cfgs = _configs(cfg, spec, root, train_eps, val_eps, seed)
        for key, c in zip(NAMES, cfgs):
            t = time.perf_counter()
            train(c)
            wall[key] = time.perf_counter() - t
        t = time.perf_counter()
        ev = EvalConfig(data=str(root), checkpoints={NAMES[key]: str(Path(c.out) / "last.pt") for key, c in zip(NAMES, cfgs)},
                        out=str(out / f"seed{seed}" / "eval_test"), split="test", n_past=N_PAST, n_future=N_FUTURE,
                        stride=1, max_windows=spec.eval_windows, seed=0, device=cfg.device, video=k == 0,
                        lpips=cfg.lpips, reference="Noether", untailored=True)
        res = evaluate(ev)
        wall["evaluate"] = time.perf_counter() - t
        runs.append(load_scores(res["window_scores"]))
        per_seed[str(seed)] = {"results": str(Path(ev.out) / "results.json"), "wall_time_s": wall}
        walls[f"seed{seed}"] = wall
    # paper Fig. 5 on the first seed's Noether Network: PCA of g_phi's embeddings of test frames + Grad-CAM
    from noether_rl.eval.analysis import AnalyzeConfig, analyze_embedding

    t = time.perf_counter()
    first_noether = Path(_configs(cfg, spec, root, train_eps, val_eps, cfg.seeds[0])[2].out) / "last.pt"
    emb = analyze_embedding(AnalyzeConfig(checkpoint=str(first_noether), data=str(root), out=str(out / "analysis"),
                                          split="test", stride=1, max_windows=spec.eval_windows, seed=0,
                                          device=cfg.device, times=(0, 7, 14)))
    walls["analysis"] = time.perf_counter() - t
    metrics = ("mse", "ssim", "psnr") + (("lpips",) if cfg.lpips else ())
    rows = compare("Noether", ["SVG", "SVG (more steps)"], runs, metrics=metrics, subsets=["all"])
    pooled = pool_seeds(runs)
    summaries = {m: pooled.summary(m) for m in pooled.metrics}
    plots = plot_all(summaries, out, metrics=metrics)

    def better_or_equal(control: str, metric: str) -> bool:
        row = next(r for r in rows if r["control"] == control and r["metric"] == metric)
        return row["diff"] <= 0 if metric in ("mse", "lpips") else row["diff"] >= 0

    verdict = {f"noether_{m}_not_worse_than_{c.replace(' ', '_').replace('(', '').replace(')', '')}":
               better_or_equal(c, m) for c in ("SVG", "SVG (more steps)") for m in ("mse", "ssim")}
    results = {
        "experiment": "ramp-video",
        "config": {**asdict(cfg), "scale_spec": asdict(spec)},
        "data": source,
        "split": {"train_episodes": train_eps, "val_episodes": val_eps, "test": "the remaining episodes / sequences"},
        "definitions": {
            "windows": f"{N_PAST} conditioning + {N_FUTURE} predicted frames, one per test sequence (seeded subset of "
                       f"at most {spec.eval_windows})",
            "se": "standard error over test sequences (episode-clustered), seeds pooled per window",
            "selection": SELECTION,
            "lpips": "computed" if cfg.lpips else "not computed (pass lpips=True with locally installed weights)",
        },
        "models": summaries,
        "verdict_rows": rows,
        "verdict": verdict,
        "per_seed": per_seed,
        "plots": [str(p) for p in plots],
        "video": str(out / f"seed{cfg.seeds[0]}" / "eval_test" / "side_by_side.mp4"),
        "embedding_analysis": {"variance": emb["variance"][:8], "first_component": emb["first_component"],
                               "first_four": emb["first_four"], "gradcam": str(out / "analysis" / "gradcam.png"),
                               "seed": cfg.seeds[0]},
        "wall_time_s": walls,
    }
    write_results(out / "results.json", results)
    return results
