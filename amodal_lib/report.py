"""Write ``results/README.md`` from ``results/manifest.json`` (``python -m amodal_lib.report``):
a short index of what the notebooks made.

Per notebook and profile (:data:`ENTRIES`): its headline table (the rows and columns that carry
the result), its key figure, one line of reading against the paper, and links to the executed
notebook and to every table and figure it wrote, whole. The line is computed from the notebook's
outputs, so it stays true when the numbers change; where the paper reports a number only for a
different experiment, it says so and sets no number of the paper beside ours
(:mod:`amodal_lib.paper`). A notebook without an entry gets its first table and figure.
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pandas as pd

from . import paper
from .experiments.comparison import PCNET, VAE_MODE, VAE_TRANSFORMER
from .experiments.comparison import reading as table_reading
from .experiments.per_instance import gap_reading
from .experiments.spread import seeds_for
from .io import atomic_write_text
from .profiles import RESULTS, get_profile

HEADLINE_ROWS = 8   # at most this many rows of a headline table


class Outputs:
    """What one notebook run wrote (its manifest entry's files, under ``root``), by file stem."""

    def __init__(self, run: dict, root: Path):
        self.root, self.files = root, list(run.get("outputs", []))

    def path(self, stem: str, ext: str) -> Optional[str]:
        """The output ``stem.ext`` (relative to ``root``) if the run wrote it and it is there."""
        return next((o for o in self.files if Path(o).name == f"{stem}.{ext}" and (self.root / o).is_file()), None)

    def csv(self, stem: str) -> Optional[pd.DataFrame]:
        p = self.path(stem, "csv")
        return pd.read_csv(self.root / p) if p else None

    def json(self, stem: str):
        p = self.path(stem, "json")
        return json.loads((self.root / p).read_text()) if p else None

    def of_kind(self, ext: str) -> list:
        return [o for o in self.files if o.endswith("." + ext) and (self.root / o).is_file()]


# --------------------------------------------------------------------------- headline tables
def markdown_table(text: str, columns=(), rows: int = HEADLINE_ROWS, where: Optional[Callable] = None) -> list:
    """Lines of a Markdown table (as :func:`amodal_lib.nb.to_markdown` writes them: the notebook's
    number formats kept), cut to ``columns`` (all when empty) and to the first ``rows`` rows that
    pass ``where`` ({column: cell} -> bool)."""
    lines = [ln for ln in text.strip().splitlines() if ln.startswith("|")]
    if len(lines) < 2:
        return []

    def cells(line):
        return [c.strip() for c in line.strip().strip("|").split(" | ")]
    head = cells(lines[0])
    keep = [head.index(c) for c in columns if c in head] or list(range(len(head)))
    body = [cells(ln) for ln in lines[2:]]
    body = [r for r in body if len(r) == len(head) and (where is None or where(dict(zip(head, r))))]
    out = ["| " + " | ".join(head[k] for k in keep) + " |", "|" + "|".join("---" for _ in keep) + "|"]
    out += ["| " + " | ".join(r[k] for k in keep) + " |" for r in body[:rows]]
    if len(body) > rows:
        out.append(f"| ({len(body) - rows} more rows in the full table) |" + " |" * (len(keep) - 1))
    return out


def table(stem: str, columns=(), rows: int = HEADLINE_ROWS, where: Optional[Callable] = None) -> Callable:
    """A headline: the notebook's table ``stem`` (its Markdown file), cut as :func:`markdown_table` does."""
    def headline(o: Outputs) -> list:
        p = o.path(stem, "md")
        return markdown_table((o.root / p).read_text(), columns, rows, where) if p else []
    headline.stem = stem
    return headline


SCORES = ("A_full", "A_invisible", "B_full", "B_invisible")


def _posterior_width(o: Outputs) -> list:
    pw = o.json("posterior_width") or {}
    means, n = pw.get("group_mean_std", {}), pw.get("group_n", {})
    shown = len(pw.get("dims_shown", []))
    return ["| GT occlusion | instances | mean posterior std of the narrowest " + f"{shown} dims |", "|---|---|---|"] + \
        [f"| {g} | {n.get(g, '-')} | {v:.3f} |" for g, v in means.items()] if means else []


def _spread(o: Outputs) -> list:
    s = o.json("posterior_sample_spread") or {}
    return ["| instances | mean per-pixel std across the samples |", "|---|---|"] + \
        [f"| {g} | {v:.4f} |" for g, v in s.items()] if s else []


# --------------------------------------------------------------------------- readings against the paper
def _f(v) -> str:
    return f"{float(v):.2f}"


def _oracle(o: Outputs) -> str:
    t = o.csv("oracle28")
    if t is None:
        return ""
    r = t.iloc[0]
    return (f"The paper's data is KINS; this is the embedded synthetic set. oracle-28 (the GT amodal mask through a "
            f"28x28 crop) scores {_f(r.A_full)} / {_f(r.A_invisible)} full / invisible mIoU (A): the ceiling of "
            "every 28x28 method below.")


def _kl_schedule(o: Outputs) -> str:
    k, steps = paper.KL_SCHEDULE, get_profile("paper")["vae"]["stage1_steps"]
    t = o.csv("stage1_validation")
    last = "" if t is None or not len(t) else (f"; held-out reconstruction IoU {_f(t.iloc[-1, -1])} % at step "
                                               f"{int(t.iloc[-1, 0])}")
    return (f"Paper: eq. (1), the KL weight rising from {k['kl_start']:g} to {k['kl_final']:g} from step "
            f"{k['kl_t_begin']} (alpha {k['kl_alpha']:g}) of {steps}; this run keeps its shape over its own steps{last}.")


def _selection(stem: str) -> Callable:
    def line(o: Outputs) -> str:
        s = o.json(stem)
        return ("Paper: each stage is trained until converged on the validation set (supplementary 3.1). Here: "
                + s["statement"]) if s and "statement" in s else ""
    return line


def _threshold(o: Outputs) -> str:
    t = o.csv("threshold_choice")
    found = re.search(r"t = ([0-9.]+)", str(t.iloc[0, 0])) if t is not None and len(t) else None
    ours = f"; ours, searched on this run's validation sets: t = {found.group(1)}" if found else ""
    return f"Paper: {paper.CLAIMS['threshold']}{ours}."


def _completion(o: Outputs) -> str:
    ref = paper.GT_VISIBLE_INPUT["Amodal-VAE"]
    t = o.csv("table_completion")
    rows = t.set_index("method") if t is not None else pd.DataFrame()
    here = [f"{label} {_f(rows.loc[m, 'A_full'])} / {_f(rows.loc[m, 'A_invisible'])}" for m, label in
            ((VAE_MODE, "Amodal-VAE in the fitted frame (the default)"),
             (VAE_TRANSFORMER, "in the paper's transformer frame"), (PCNET, "PCNet-M")) if m in rows.index]
    runs = o.root / "tables" / "seed_spread_runs.csv"   # notebook 14's, used when made from the same weights
    seeds = pd.read_csv(runs) if runs.is_file() else None
    said = table_reading(t, seeds=seeds_for(t, seeds) if seeds is not None else None) if t is not None else []
    return (f"Paper (the same experiment, on KINS): Amodal-VAE {ref['full']:.2f} / {ref['invisible']:.2f} full / "
            f"invisible mIoU (A)." + (f" Here: {', '.join(here)}." if here else "") + "".join(" " + x for x in said)
            + _per_instance(o))


def _per_instance(o: Outputs) -> str:
    """Notebook 05's per-instance analysis in words: the overall B-invisible gap and the groups where
    PCNet-M leads (the groupings where it leads in none are left out)."""
    g = o.csv("per_instance_gap")
    if g is None:
        return ""
    lines = gap_reading(g.astype({"group": str}))
    kept = [ln for ln in lines[1:] if "leads in no group" not in ln and "no group has" not in ln]
    return " Per instance: " + " ".join(lines[:1] + (kept or ["PCNet-M leads in no group read."]))


def _gap(o: Outputs) -> str:
    g = o.json("gap_trend") or {}
    here = "; ".join(g.get("verdicts", []))
    return f"Paper: {paper.CLAIMS['gap_trend']}." + (f" Here: {here}." if here else "")


def _statement(stem: str, claim: str) -> Callable:
    def line(o: Outputs) -> str:
        s = o.json(stem) or {}
        return f"Paper: {paper.CLAIMS[claim]}." + (f" Here: {s['statement']}" if "statement" in s else "")
    return line


def _sampling(o: Outputs) -> str:
    s = list((o.json("posterior_sample_spread") or {}).items())
    here = "" if len(s) != 2 else (f" Here the heavily occluded instances' samples differ "
                                   f"{'more' if s[1][1] > s[0][1] else 'NOT more'} than the mostly visible ones' "
                                   f"({s[1][1]:.4f} against {s[0][1]:.4f}).")
    return ("Paper: samples of the prior look like diverse car and pedestrian shapes (Fig 3); posterior samples of a "
            "heavily occluded object differ more than those of a mostly visible one (Fig 9)." + here)


def _failures(o: Outputs) -> str:
    g = o.json("gt_box_gain") or {}
    here = "" if "worst_improved_share" not in g else (
        f" Here the GT amodal box improves {100 * g['worst_improved_share']:.0f}% of the worst cases "
        f"(mean gain {100 * g['worst_mean_gain']:.1f} IoU points).")
    return f"Paper: {paper.CLAIMS['failures']}." + here


def _pcnet(o: Outputs) -> str:
    return ("Paper: no Deocclusion (PCNet-M) number with GT visible masks as input, the input here. Its only "
            "Deocclusion numbers complete *predicted* masks, a different experiment, so they are not comparable "
            f"with this table ({paper.PREDICTED}).")


def _segmentation_input(o: Outputs) -> str:
    ref = {k: paper.GT_VISIBLE_INPUT["Amodal-VAE"][k] - paper.PREDICTED_INPUT["Amodal-VAE"][k] for k in ("full", "invisible")}
    d = o.csv("seg_input_drop")
    here = ""
    if d is not None:
        a = d[(d.protocol == "A") & (d.metric == "invisible") & d.method.str.startswith("Amodal-VAE")]
        here = " Here it loses " + "; ".join(f"{_f(r.drop)} invisible in {r.method}" for r in a.itertuples()) + "." \
            if len(a) else ""
    return (f"Paper (the same experiment, on KINS; its numbers beside ours in the table's paper_* columns): from GT "
            f"to predicted visible masks Amodal-VAE loses {ref['full']:.2f} full and {ref['invisible']:.2f} "
            f"invisible mIoU (A).{here}")


def _inpainting(o: Outputs) -> str:
    t = o.csv("table_inpainting_quality")
    here = []
    if t is not None:
        for exp in ("background", "instance"):
            e = t[t.experiment == exp]
            ours, base = e[e.method.str.contains("partial conv")], e[~e.method.str.contains("partial conv")]
            if len(ours) and len(base):
                better = float(ours.L1.iloc[0]) < float(base.L1.min())
                here.append(f"the {exp} inpainter's L1 {float(ours.L1.iloc[0]):.4f} is "
                            f"{'below' if better else 'NOT below'} the best OpenCV fill's {float(base.L1.min()):.4f}")
    return ("Paper: Fig 6 shows edited scenes and reports no number. Here, inside holes of known content: "
            + "; ".join(here) + ".") if here else "Paper: Fig 6 shows edited scenes and reports no number."


def _pose(o: Outputs) -> str:
    t = o.csv("pose_reconstruction")
    here = ""
    if t is not None and len(t) > 1:
        base = t.iloc[1:].sort_values("L1 (grey levels)").iloc[0]
        here = (f" Here the renderer redraws held-out instances at L1 {_f(t.iloc[0]['L1 (grey levels)'])} grey "
                f"levels, against {_f(base['L1 (grey levels)'])} for the best baseline ({base.method}).")
    return ("Paper: supplementary Fig 10 shows renderings only (GauGAN on the full masks of KINS instances) and "
            "reports no number." + here)


@dataclass(frozen=True)
class Entry:
    """What the index shows of one notebook: a title, its headline table (a function of its
    outputs giving Markdown lines), its key figure (a file stem) and its line against the paper."""
    title: str
    headline: Callable
    figure: Optional[str]
    reading: Callable = field(default=lambda o: "")


ENTRIES = {
    "00_data": Entry("the data", table("oracle28"), "data_examples", _oracle),
    "01_stage1_vae": Entry("stage 1: the shape prior (VAE on full masks)", table("stage1_validation"),
                           "stage1_kl_schedule_and_curves", _kl_schedule),
    "02_stage2_partial_encoder": Entry("stage 2: the partial encoder on simulated occlusions",
                                       table("stage2_validation"), "stage2_validation", _selection("stage2_selection")),
    "03_stage3_finetune": Entry("stage 3: fine-tuning on real occlusions",
                                table("stage3_before_after", ("set", "method", *SCORES)), "stage3_val_miou",
                                _selection("stage3_selection")),
    "04_threshold_search": Entry("the decoder threshold", table("threshold_choice"), "threshold_sweep", _threshold),
    "05_mask_completion": Entry("mask completion: the main table", table("table_completion", ("method", "threshold", "n", *SCORES)),
                                "fig5_pred_vs_gt", _completion),
    "06_miou_vs_occlusion": Entry("mIoU against the visible-area ratio (Fig 1)",
                                  table("gap_mode_vs_best", ("bin", "n", "A_full_gap", "A_invisible_gap", "B_full_gap",
                                                             "B_invisible_gap"), rows=10),
                                  "fig1_miou_vs_visible_ratio", _gap),
    "07_posterior_width": Entry("posterior width against occlusion (Fig 4)", _posterior_width, "fig4_posterior_width",
                                _statement("posterior_width", "posterior_width")),
    "08_sampling": Entry("samples of the prior (Fig 3) and of the posterior (Fig 9)", _spread, "fig9_posterior_samples",
                         _sampling),
    "09_failure_cases": Entry("failure cases and the full-object frame (Figs 7-8)",
                              table("gt_box_gain", where=lambda r: r.get("protocol") == "A"), "fig7_failure_cases",
                              _failures),
    "10_pcnet_baseline": Entry("the PCNet-M baseline", table("pcnet_test_miou"), "pcnet_completions", _pcnet),
    "11_segmentation_input": Entry("predicted visible masks as input (Table 1)",
                                   table("table_segmentation_input", ("input", "method", "A_full", "A_invisible",
                                                                      "paper_full", "paper_invisible")),
                                   "fig_segmentation_input_table1", _segmentation_input),
    "12_scene_editing": Entry("scene editing (Fig 6)", table("table_inpainting_quality", ("experiment", "method", "L1",
                                                                                          "PSNR", "SSIM"), rows=10),
                              "fig6_scene_editing", _inpainting),
    "13_pose_change": Entry("changing an instance's pose (Fig 10)",
                            table("pose_reconstruction", ("method", "L1 (grey levels)", "PSNR (dB)", "SSIM")),
                            "fig10_pose_change", _pose),
}


def _fallback(o: Outputs) -> Entry:
    md, png = o.of_kind("md"), o.of_kind("png")
    return Entry("", table(Path(md[0]).stem) if md else (lambda o: []), Path(png[0]).stem if png else None)


# --------------------------------------------------------------------------- the index
def section(run: dict, root: Path) -> list:
    o = Outputs(run, root)
    name, profile = run["notebook"], run.get("profile", "?")
    entry = ENTRIES.get(name) or _fallback(o)
    lines = [f"## {name} ({profile})" + (f": {entry.title}" if entry.title else ""), ""]
    executed = Path("notebooks" if profile == "default" else f"{profile}/notebooks") / f"{name}.ipynb"
    if (root / executed).is_file():
        lines += [f"Executed notebook: [{executed}]({executed}).", ""]
    head = entry.headline(o)
    if head:
        lines += head + [""]
    fig = o.path(entry.figure, "png") if entry.figure else None
    if fig:
        lines += [f"![{entry.figure}]({fig})", ""]
    said = entry.reading(o)
    if said:
        lines += [said, ""]
    tables = [f"[{Path(p).stem}]({p})" for p in o.of_kind("md")]
    figures = [f"[{Path(p).stem}]({p})" for p in o.of_kind("png") if p != fig]
    other = [f"[{Path(p).stem}]({p})" for p in o.of_kind("json")]
    for label, links in (("Tables", tables), ("Other figures", figures), ("JSON", other)):
        if links:
            lines.append(f"{label}: " + ", ".join(links) + ".  ")
    return lines + [""]


def render(runs: list, root: Path = RESULTS) -> str:
    lines = ["# Results", "",
             "Written by `run_all.sh` (`python -m amodal_lib.report`) from `manifest.json`; do not edit by hand.",
             "Every number here was computed by the notebook named in its heading. Per notebook: its headline",
             "table, its key figure, one line read against the paper, and links to everything else it made",
             "(full tables, figures as PNG beside a PDF of each). The terms (protocols A and B, full and invisible",
             "mIoU, the frames, oracle-28) are defined in the [README's glossary](../README.md#glossary).", ""]
    if not runs:
        return "\n".join(lines + ["No notebook has run yet: `./run_all.sh`."]) + "\n"
    lines += ["| notebook | profile | data | commit | minutes |", "|---|---|---|---|---|"]
    for r in runs:
        d, s = r.get("data", {}), r.get("seconds")
        minutes = f"{s / 60:.1f}" if isinstance(s, (int, float)) else "?"
        lines.append(f"| [{r['notebook']}](#{_anchor(r)}) | {r.get('profile')} | {d.get('root', '?')} ({d.get('hash')}) | "
                     f"{r.get('commit')} | {minutes} |")
    lines.append("")
    for r in runs:
        lines += section(r, root)
    return "\n".join(lines).rstrip() + "\n"


def _anchor(run: dict) -> str:
    """GitHub's anchor of a section heading (lower case, punctuation dropped, spaces to hyphens)."""
    entry = ENTRIES.get(run["notebook"])
    text = f"{run['notebook']} ({run.get('profile', '?')})" + (f": {entry.title}" if entry else "")
    return "".join(c for c in text.lower() if c.isalnum() or c in " -_").replace(" ", "-")


def main(argv=None) -> int:
    path = RESULTS / "manifest.json"
    runs = json.loads(path.read_text()) if path.exists() else []
    text = render(runs)
    atomic_write_text(RESULTS / "README.md", text)
    print(f"wrote {RESULTS.name}/README.md ({len(runs)} notebook runs, {len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
