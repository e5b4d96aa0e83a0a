"""Figures of training runs: curves through a stage, validation, the checkpoint kept (notebooks 01-03, 10)."""
from __future__ import annotations

from typing import Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..train.amodal_vae_stages import kl_weight
from .base import METRIC_TITLES, PROTOCOL_NAMES, legend_below


def plot_training_history(history: Sequence[dict], title: str = "PCNet-M"):
    """A run's training loss (left) and, right, the share of erased pixels the network recovers
    during training beside the validation full / invisible mIoU (protocol A) at each evaluation.
    ``history``: the engine's records (``split`` "train" or "val")."""
    hist = pd.DataFrame(list(history))
    tr = hist[hist.split == "train"] if len(hist) else hist
    va = hist[hist.split == "val"] if len(hist) else hist
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    axes[0].plot(tr.step, tr.loss, label="weighted cross-entropy")
    axes[0].set(xlabel="step", ylabel="training loss", yscale="log", title=f"{title} training loss")
    if "hidden_recall" in tr:
        axes[1].plot(tr.step, 100 * tr.hidden_recall, label="erased pixels recovered (train, %)")
    if len(va):
        axes[1].plot(va.step, va.val_full_miou, "o-", label="val full mIoU (A)")
        axes[1].plot(va.step, va.val_invisible_miou, "s-", label="val invisible mIoU (A)")
    axes[1].set(xlabel="step", ylabel="%", title="completion during training")
    legend_below(fig, axes[1:], ncol=3)
    return fig


def plot_validation_through_training(val: pd.DataFrame, baselines: Optional[pd.DataFrame] = None,
                                     xlabel: str = "step", title: str = "validation"):
    """A stage's validation on completions, protocol A only: the selection score (left), full mIoU
    (middle) and invisible mIoU (right) against the step, one colour per validation set, each set's
    baselines as levels in its colour (protocol A too: never a protocol-B curve against a protocol-A
    level); the checkpoint the stage kept is starred and marked by a vertical line. ``val``:
    :func:`amodal_lib.experiments.stages.validation_table`; ``baselines``: rows (``set``, ``method``,
    ``A_full``, ``A_invisible``), e.g. :func:`amodal_lib.experiments.comparison.models_table_per_set`'s
    visible-mask and convex-hull rows (notebooks 02 and 03)."""
    pal = sns.color_palette("colorblind")
    sets = list(dict.fromkeys(val.set))
    styles = [":", "-.", (0, (5, 2)), (0, (1, 3))]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    score = val.drop_duplicates("step")
    axes[0].plot(score.step, score.score, "o-", color="0.3", label="selection score (mean over the sets)")
    for ax, col, name in ((axes[1], "A_full", "full"), (axes[2], "A_invisible", "invisible")):
        for k, s in enumerate(sets):
            v = val[val.set == s]
            ax.plot(v.step, v[col], "o-", color=pal[k], label=f"{s}: Amodal-VAE")
            base = baselines[baselines.set == s] if baselines is not None else pd.DataFrame(columns=["method", col])
            for j, row in enumerate(base.itertuples()):
                ax.axhline(getattr(row, col), color=pal[k], ls=styles[j % len(styles)], lw=1,
                           label=f"{s}: {row.method}")
        ax.set(ylabel=f"{METRIC_TITLES[name]} (%, A)", title=f"{METRIC_TITLES[name]}, {PROTOCOL_NAMES['A']}")
    chosen = val[val.selected]
    for ax, col in zip(axes, ("score", "A_full", "A_invisible")):
        if len(chosen):
            ax.axvline(chosen.step.iloc[0], color="0.5", ls="--", lw=1, label=f"kept: step {chosen.step.iloc[0]}")
            ax.plot(chosen.step, chosen[col], "*", ms=14, color="black", zorder=5)
        ax.set(xlabel=xlabel)
    axes[0].set(ylabel="(A full + A invisible) / 2, %", title=f"Selection score, {title}")
    legend_below(fig, axes, ncol=3)
    return fig


def plot_stage1_training(history: Sequence[dict], config: dict, paper_schedule: dict, paper_steps: int):
    """Stage 1: the KL weight lambda(t) of supplementary eq. (1) with this run's constants
    (``config``: ``kl_final``, ``kl_start``, ``kl_alpha``, ``kl_t_begin``, ``stage1_steps``) and,
    on its own step axis (top), with the paper's (``paper_schedule``, over ``paper_steps``); then
    the KL term and the reconstruction term per training step and on held-out masks."""
    keys = ("kl_final", "kl_start", "kl_alpha", "kl_t_begin")
    hist = pd.DataFrame(list(history))
    tr, va = hist[hist.split == "train"], hist[hist.split == "val"]
    t, t_paper = np.arange(config["stage1_steps"] + 1), np.arange(paper_steps + 1)
    fig, ax = plt.subplots(1, 3, figsize=(11, 3.5))
    ax[0].plot(t, [kl_weight(s, *(config[k] for k in keys)) for s in t],
               label=f"this run: t_begin={config['kl_t_begin']}, alpha={config['kl_alpha']}")
    ax[0].set(xlabel="step t (this run)", ylabel="lambda(t)", title="KL weight, eq. (1)")
    top = ax[0].twiny()
    top.plot(t_paper, [kl_weight(s, *(paper_schedule[k] for k in keys)) for s in t_paper], "--", color="C1",
             label=f"paper: t_begin={paper_schedule['kl_t_begin']}, alpha={paper_schedule['kl_alpha']}")
    top.set_xlabel("step t (paper)", color="C1")
    top.grid(False)
    for a, col, ylabel, name in ((ax[1], "kl", "KL(q(z|y) || N(0, I)) [nats]", "KL term"),
                                 (ax[2], "bce", "BCE [nats / mask]", "reconstruction term")):
        a.plot(tr.step, tr[col], label="train")
        a.plot(va.step, va[f"val_{col}"], "o-", label="held out (z = mu)")
        a.set(xlabel="step", ylabel=ylabel, title=name)
    legend_below(fig, [ax[0], top, ax[1]], ncol=2)
    return fig


def plot_stage2_training(history: Sequence[dict]):
    """Stage 2: the reconstruction term and the transformer's box loss per step, and on held-out
    simulated occlusions the IoU of the completion with the full mask, in the true full-object box
    (GT-box mode) and placed in the box the transformer predicts."""
    hist = pd.DataFrame(list(history))
    tr, va = hist[hist.split == "train"], hist[hist.split == "val"]
    fig, ax = plt.subplots(1, 3, figsize=(11, 3.4))
    ax[0].plot(tr.step, tr.bce)
    ax[0].set(xlabel="step", ylabel="BCE [nats / mask]", title="reconstruction term")
    ax[1].plot(tr.step, tr.box)
    ax[1].set(xlabel="step", ylabel="smooth L1", title="box regression (transformer)")
    ax[2].plot(va.step, va.val_iou_gtbox, "o-", label="GT box")
    ax[2].plot(va.step, va.val_iou_predbox, "o-", label="predicted box")
    ax[2].set(xlabel="step", ylabel="IoU %", title="held-out simulated occlusions")
    legend_below(fig, ax[2:], ncol=2)
    return fig


def plot_occlusion_spread(simulated, real=None):
    """How much of the object stage 2's simulation hides, beside the real occlusion rates of a split
    (``real``: omitted or empty for modal-only data, which has none)."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    bins = np.linspace(0, 1, 21)
    ax.hist(np.asarray(simulated), bins=bins, density=True, alpha=0.6, label="simulated (stage 2)")
    if real is not None and len(real):
        ax.hist(np.asarray(real, dtype=float), bins=bins, density=True, alpha=0.6, label="real (validation split)")
    ax.set(xlabel="hidden fraction of the object", ylabel="density", title="Occlusion: simulated vs real")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_architecture(parts: Sequence[dict], latent_dim: int, title: str = "Amodal-VAE"):
    """Supplementary Fig 2 drawn from :func:`amodal_lib.models.amodal_vae.architecture` (the live
    model's blocks, output shapes and parameter counts, so the drawing cannot drift from the code):
    one column per sub-network, its input on top, one box per block, and how they connect below."""
    order = sorted(parts, key=lambda p: ["encoder", "partial", "decoder", "spatial"].index(
        p["blocks"][0]["name"].split(".")[0]) if p["blocks"] else 9)
    rows = max(len(p["blocks"]) for p in order) + 1
    fig, ax = plt.subplots(figsize=(4.2 * len(order), 0.95 * rows + 1.4))
    ax.set(xlim=(0, len(order)), ylim=(-0.8, rows + 0.9))
    ax.axis("off")
    colours = {"conv": "#cfe2f3", "deconv": "#d9ead3", "residual": "#fce5cd", "linear": "#ead1dc", "max": "#eeeeee"}
    for col, part in enumerate(order):
        x = col + 0.5
        ax.text(x, rows + 0.55, f"{part['title']}\n{part['params']:,} parameters", ha="center", va="center",
                fontsize=10, weight="bold")
        ax.text(x, rows - 0.1, f"in: {part['input']}", ha="center", va="center", fontsize=8, style="italic",
                bbox=dict(boxstyle="round,pad=0.3", fc="white", ec="0.4"))
        for k, b in enumerate(part["blocks"]):
            y = rows - 1 - k
            fc = next((c for key, c in colours.items() if b["kind"].startswith(key)), "#ffffff")
            ax.text(x, y - 0.1, f"{b['kind']}\n-> {b['shape']}   ({b['params']:,})", ha="center", va="center",
                    fontsize=7.5, bbox=dict(boxstyle="round,pad=0.35", fc=fc, ec="0.3"))
            ax.annotate("", xy=(x, y + 0.22), xytext=(x, y + 0.58), arrowprops=dict(arrowstyle="->", color="0.3"))
    ax.text(len(order) / 2, -0.3,
            f"stage 1: full mask -> encoder -> (mu, log var) of a {latent_dim}-d factorial Normal -> z -> decoder -> "
            "28x28 Bernoulli probabilities of the full mask (the heads' 128 outputs: mu and log var)\n"
            "stages 2-3 and completion: partial mask -> partial encoder -> z -> the same decoder (frozen); "
            "the spatial transformer's (log sx, log sy, tx, ty) places that full-object crop relative to the visible box",
            ha="center", va="center", fontsize=8.5)
    ax.set_title(f"{title}: the architecture (supplementary Fig 2), read from the model", fontsize=11, pad=14)
    return fig
