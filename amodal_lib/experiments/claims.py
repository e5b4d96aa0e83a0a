"""Whether each claim of the paper that results/ quotes holds on this data: one line for every
curve the claim covers, computed from the tables the notebooks make (never written by hand).

Each function returns a :class:`Claim`: the paper's words (:data:`amodal_lib.paper.CLAIMS`) and one
:class:`Verdict` per curve (``holds``: True, False, or None where the data cannot test it), with
the numbers it rests on. A notebook prints :meth:`Claim.lines` and saves :meth:`Claim.record`.

- :func:`gap_claim` (notebook 06, supplementary Fig 1): the best-of-k curve above the posterior
  mode's, the gap narrowing as the occluded area shrinks: full and invisible mIoU, protocols A
  and B, each with the slope its verdict follows.
- :func:`threshold_claim` (notebook 04, supplementary 3.1): t = 0.1 is the best threshold on
  validation, for each score of the sweep.
- :func:`posterior_width_claim` (notebook 07, Fig 4): a wider posterior with more occlusion, over
  the dims shown and dim by dim, and on the curves of the investigation (:func:`group_verdict`,
  :func:`strata_verdict`: other inputs, occlusion assigned at random, within a category or size).
- :func:`failure_claim` (notebook 09, Figs 7-8): the GT amodal box repairs most failures, and
  raises the mIoU of each frame.
- :func:`seg_input_claims` (notebook 11, Table 1): with predicted masks Amodal-VAE ahead of
  PCNet-M, and its invisible mIoU dropping less than its full mIoU.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pandas as pd

from .. import paper
from ..metrics import SCORE_COLUMNS
from ..thresholds import pick_threshold
from .analysis import gap_trend, widens

WORD = {True: "HOLDS", False: "does NOT hold", None: "cannot be tested"}
METRIC_NAMES = {"A_full": "A full", "A_invisible": "A invisible", "B_full": "B full", "B_invisible": "B invisible"}


@dataclass
class Verdict:
    """One curve of a claim: its name, whether the claim holds on it, the sentence that says so
    and the numbers behind it."""
    curve: str
    holds: Optional[bool]
    line: str
    numbers: dict = field(default_factory=dict)

    def text(self) -> str:
        return f"{self.curve}: {self.line}: {WORD[self.holds]}"


@dataclass
class Claim:
    """A claim of the paper (``key`` of :data:`amodal_lib.paper.CLAIMS`) and its verdict per curve."""
    key: str
    verdicts: list

    @property
    def text(self) -> str:
        return paper.CLAIMS[self.key]

    @property
    def holds(self) -> Optional[bool]:
        """True when it holds on every curve that can test it, False when it fails on one."""
        known = [v.holds for v in self.verdicts if v.holds is not None]
        return None if not known else all(known)

    def lines(self) -> list:
        head = f"Paper: {self.text}. Here: {WORD[self.holds]}"
        if self.holds is False:
            failed = [v.curve for v in self.verdicts if v.holds is False]
            head += f" (not on {', '.join(failed)})"
        return [head + "."] + [f"- {v.text()}" for v in self.verdicts]

    def record(self) -> dict:
        return {"claim": self.text, "holds": self.holds, "verdicts": [v.text() for v in self.verdicts],
                "curves": {v.curve: {"holds": v.holds, **v.numbers} for v in self.verdicts}}


# --------------------------------------------------------------------------- supplementary Fig 1
def gap_claim(gap: pd.DataFrame, min_n: int = 5, metrics=tuple(METRIC_NAMES)) -> Claim:
    """The mode / best-of-k gap (:func:`amodal_lib.experiments.analysis.mode_vs_best_gap`) of each of
    ``metrics``: it holds on a curve when every bin's gap is >= 0 (best of k above the mode) and the
    count-weighted slope of the gap against the visible-area ratio is negative (the gap narrows as
    the occluded area becomes smaller); bins with fewer than ``min_n`` instances are left out."""
    out = []
    for m in metrics:
        col = f"{m}_gap"
        trend = gap_trend(gap, col, min_n)
        g = gap[(gap.n >= min_n) & gap[col].notna()]
        if trend["slope"] is None:
            out.append(Verdict(METRIC_NAMES[m], None, f"{len(g)} bin(s) with {min_n}+ instances", trend))
            continue
        above = int((g[col] >= 0).sum())
        first, last = g.iloc[0], g.iloc[-1]
        narrows = trend["narrows"]
        line = (f"best of k at or above the mode in {above} of {len(g)} bins; the gap goes from {first[col]:.2f} "
                f"points at visible ratio {first.bin} to {last[col]:.2f} at {last.bin} (slope {trend['slope']:+.2f} "
                f"points per unit of visible ratio): it {'narrows' if narrows else 'widens'} as the occluded area "
                "becomes smaller")
        numbers = {**trend, "above_bins": above, "first_gap": float(first[col]), "last_gap": float(last[col])}
        out.append(Verdict(METRIC_NAMES[m], bool(narrows and above == len(g)), line, numbers))
    return Claim("gap_trend", out)


# --------------------------------------------------------------------------- supplementary 3.1
def threshold_claim(sweep: pd.DataFrame, paper_threshold: float = paper.THRESHOLD) -> Claim:
    """Does each score of a validation sweep (its rows with set "mean" when it has a ``set``
    column) peak at the paper's threshold? The line gives where it peaks and what the paper's
    threshold scores instead."""
    mean = sweep[sweep.set == "mean"] if "set" in sweep else sweep
    out = []
    for c in SCORE_COLUMNS:
        if not mean[c].notna().any():
            out.append(Verdict(METRIC_NAMES[c], None, "no score in the sweep"))
            continue
        best = pick_threshold(mean, c)
        at_best = float(mean.loc[np.isclose(mean.threshold, best), c].iloc[0])
        hit = mean.loc[np.isclose(mean.threshold, paper_threshold), c]
        if hit.empty:
            out.append(Verdict(METRIC_NAMES[c], None, f"peaks at t = {best:g} ({at_best:.2f}); the sweep did not "
                                                      f"try t = {paper_threshold:g}", {"best": best}))
            continue
        holds = bool(np.isclose(best, paper_threshold))
        line = f"peaks at t = {best:g} ({at_best:.2f}); at the paper's t = {paper_threshold:g} it is {float(hit.iloc[0]):.2f}"
        out.append(Verdict(METRIC_NAMES[c], holds, line, {"best": best, "at_best": at_best,
                                                           "at_paper": float(hit.iloc[0])}))
    return Claim("threshold", out)


# --------------------------------------------------------------------------- supplementary Fig 4
def posterior_width_claim(pw, extra: Optional[list] = None) -> Claim:
    """Fig 4 as the paper draws it (:class:`amodal_lib.experiments.analysis.PosteriorWidth`): the mean
    std of the dims shown, by occlusion group, and the dims one by one (it holds when most of them
    widen monotonically); ``extra``: more :class:`Verdict`s on the same claim (other inputs, other
    groupings: :func:`group_verdict`, :func:`strata_verdict`)."""
    groups = [g for g in pw.group_n if pw.group_n[g]]
    line = (f"mean std of the {len(pw.dims)} narrowest dims by occlusion: "
            + ", ".join(f"{g} {pw.group_mean[g]:.3f} (n={pw.group_n[g]})" for g in groups))
    out = [Verdict("Fig 4 (15 narrowest dims, mean)", pw.holds, line,
                   {"group_mean_std": pw.group_mean, "group_n": pw.group_n})]
    n = len(pw.dims)
    out.append(Verdict("Fig 4 (dim by dim)", None if len(groups) < 2 else bool(pw.monotone_dims > n / 2),
                       f"{pw.monotone_dims} of {n} dims widen (or stay) from each occlusion group to the next",
                       {"monotone_dims": pw.monotone_dims, "dims": n}))
    return Claim("posterior_width", out + list(extra or []))


def group_verdict(curve: str, table: pd.DataFrame, value: str = "mean_width") -> Verdict:
    """Fig 4's claim on one curve: ``table`` has one row per occlusion group (``group``, ``n`` and
    ``value``); it holds when ``value`` grows from each group with instances to the next."""
    t = table[table.n > 0]
    means = [float(v) for v in t[value]]
    holds = widens(means)
    line = ", ".join(f"{r.group} {getattr(r, value):.3f} (n={r.n})" for r in t.itertuples())
    if "paired_change" in t and len(t) > 1:
        line += "; the same instances occluded against whole: " + ", ".join(
            f"{r.group} {r.paired_change:+.3f}" for r in t.iloc[1:].itertuples())
    return Verdict(curve, holds, line, {"means": dict(zip(t.group, means)), "n": dict(zip(t.group, t.n.astype(int)))})


def trend_line(curve: str, table: pd.DataFrame, value: str = "mean_width") -> str:
    """One curve of the explanation of Fig 4 (not a test of the claim: another model, or a quantity
    that is not the encoder's width): its value per occlusion group and which way it goes."""
    t = table[table.n > 0]
    v = [float(x) for x in t[value]]
    way = ("grows with occlusion" if widens(v) else "shrinks with occlusion" if widens(v[::-1])
           else "neither grows nor shrinks throughout")
    return f"{curve}: " + ", ".join(f"{g} {x:.3f}" for g, x in zip(t.group, v)) + f": {way}"


def strata_verdict(curve: str, grouped: pd.DataFrame, min_n: int = 20) -> Verdict:
    """Fig 4's claim within each stratum of :func:`amodal_lib.experiments.analysis.grouped_width` that has
    at least ``min_n`` instances in every occlusion group: it holds when it holds in each of them."""
    ok = grouped.groupby("stratum", sort=False).filter(lambda g: (g.n >= min_n).all())
    verdicts = {st: widens(g.mean_width.to_numpy(float)) for st, g in ok.groupby("stratum", sort=False)}
    if not verdicts:
        return Verdict(curve, None, f"no stratum has {min_n}+ instances in every occlusion group")
    parts = [f"{st} " + " / ".join(f"{v:.3f}" for v in ok[ok.stratum == st].mean_width) for st in verdicts]
    line = (f"wider with more occlusion in {sum(bool(v) for v in verdicts.values())} of {len(verdicts)} strata with "
            f"{min_n}+ instances per group (0% / 1-50% / >50%: " + "; ".join(parts) + ")")
    return Verdict(curve, all(verdicts.values()), line, {"strata": verdicts})


# --------------------------------------------------------------------------- supplementary Figs 7-8
def failure_claim(worst: pd.DataFrame, gain: pd.DataFrame) -> Claim:
    """The worst completions (:func:`amodal_lib.experiments.analysis.worst_cases`): it holds when the
    GT amodal box improves more than half of them; and for each frame of ``gain`` (the rows of
    :func:`amodal_lib.experiments.analysis.gt_box_gain` with a ``frame`` column), protocol A: the GT box
    raises its full and its invisible mIoU."""
    share = float((worst.gain > 0).mean()) if len(worst) else float("nan")
    out = [Verdict("the worst cases", None if not len(worst) else bool(share > 0.5),
                   f"the GT amodal box improves {100 * share:.0f}% of the {len(worst)} worst completions "
                   f"(mean gain {100 * worst.gain.mean():.1f} IoU points)" if len(worst) else "no case",
                   {"improved_share": share, "cases": int(len(worst))})]
    for frame, rows in gain[gain.protocol == "A"].groupby("frame", sort=False):
        for r in rows.itertuples():
            holds = None if pd.isna(r.gain) else bool(r.gain > 0)
            out.append(Verdict(f"{frame}, A {r.metric}", holds, f"{r.predicted_box:.2f} with its own frame, "
                               f"{r.gt_amodal_box:.2f} with the GT amodal box ({r.gain:+.2f})",
                               {"gain": None if pd.isna(r.gain) else float(r.gain)}))
    return Claim("failures", out)


# --------------------------------------------------------------------------- supplementary Table 1
def seg_input_claims(table: pd.DataFrame, drops: pd.DataFrame, vae_rows, pcnet_row: str,
                     predicted_input: str) -> list:
    """Two claims of Table 1 (notebook 11), for each Amodal-VAE row of ``vae_rows``: with predicted
    visible masks it is ahead of PCNet-M (``pcnet_row``) on protocol-A full and invisible mIoU;
    and its protocol-A invisible mIoU drops less than its full mIoU from GT to predicted input
    (the paper: 2.14 against 8.65 points)."""
    t = table[table.input == predicted_input].set_index("method")
    ahead = []
    for row in vae_rows:
        if row not in t.index or pcnet_row not in t.index:
            continue
        for c in ("A_full", "A_invisible"):
            a, b = t.loc[row, c], t.loc[pcnet_row, c]
            ahead.append(Verdict(f"{row}, {METRIC_NAMES[c]}", bool(a > b), f"{a:.2f} against PCNet-M's {b:.2f}",
                                 {"ours": float(a), "pcnet": float(b)}))
    d = drops[drops.protocol == "A"]
    robust = []
    for row in vae_rows:
        s = d[d.method == row].set_index("metric")
        if not {"full", "invisible"} <= set(s.index):
            continue
        full, inv = float(s.loc["full", "drop"]), float(s.loc["invisible", "drop"])
        robust.append(Verdict(row, bool(inv < full), f"invisible mIoU drops {inv:.2f} points, full mIoU {full:.2f}",
                              {"full_drop": full, "invisible_drop": inv}))
    return [Claim("seg_input_ahead", ahead), Claim("seg_input_robust", robust)]
