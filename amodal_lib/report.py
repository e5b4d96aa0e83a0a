"""Write ``results/README.md`` from ``results/manifest.json`` (``python -m amodal_lib.report``).

Every table and figure is listed with the notebook, profile, data and commit that made it;
JSON artifacts are shown whole. Where the paper reports a number for the same experiment it
stands beside ours; where it reports one only for a different experiment, that is said, and
the numbers are not set beside ours as if comparable (:mod:`amodal_lib.paper`).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import paper
from .experiments.comparison import reading as table_reading
from .experiments.spread import seeds_for
from .io import atomic_write_text
from .profiles import RESULTS

# what the paper says about each result of ours (by file stem), and whether it is the same experiment
PAPER = {
    "table_completion": f"Paper (the same experiment, on KINS): {paper.GT_VISIBLE}.",
    "threshold_choice": f"Paper: {paper.CLAIMS['threshold']}.",
    "pcnet_test_miou": "Paper: no Deocclusion (PCNet-M) number with GT visible masks as input, the input here. "
                       "Its only Deocclusion numbers complete *predicted* masks, a different experiment, so they "
                       f"are not comparable with this table ({paper.PREDICTED}).",
    "gap_trend": f"Paper: {paper.CLAIMS['gap_trend']}.",
    "gap_mode_vs_best": f"Paper: {paper.CLAIMS['gap_trend']}.",
    "posterior_width": f"Paper: {paper.CLAIMS['posterior_width']}.",
    "gt_box_gain": f"Paper: {paper.CLAIMS['failures']}.",
}
# the segmentation-input experiment (notebook 11)
_DROP = {k: round(paper.GT_VISIBLE_INPUT["Amodal-VAE"][k] - paper.PREDICTED_INPUT["Amodal-VAE"][k], 2)
         for k in ("full", "invisible")}
PAPER.update({
    "table_segmentation_input": "Paper (the same experiment on KINS, protocol A; beside ours in the paper_* "
                                f"columns): {paper.PREDICTED}; {paper.GT_VISIBLE}.",
    "seg_input_drop": f"Paper: from GT to predicted visible masks Amodal-VAE loses {_DROP['full']:.2f} full and "
                      f"{_DROP['invisible']:.2f} invisible mIoU on KINS (protocol A); it gives no Deocclusion "
                      "number with GT masks, so no drop for PCNet-M.",
})

# the pose change (notebook 13) has no number in the paper to stand beside ours
PAPER["fig10_pose_change"] = ("Paper: supplementary Fig 10 shows renderings only (GauGAN on the full masks of KINS "
                              "instances); it reports no number for them, so the tables of notebook 13 stand alone.")
PAPER["pose_reconstruction"] = PAPER["fig10_pose_change"]


def reading(stem: str, root: Path) -> list:
    """Sentences computed from a table's numbers (so they stay true when the numbers change): for
    the main table, :func:`amodal_lib.experiments.comparison.reading`'s, each verdict with whether every
    seed of notebook 14 agrees when its spread was made from the same weights."""
    if stem != "table_completion":
        return []
    import pandas as pd
    p = root / "tables" / f"{stem}.csv"
    if not p.exists():
        return []
    table, runs = pd.read_csv(p), root / "tables" / "seed_spread_runs.csv"
    seeds = seeds_for(table, pd.read_csv(runs)) if runs.exists() else None   # notebook 14's, of the same weights
    sentences = table_reading(table, seeds=seeds)
    return ["Reading: " + " ".join(sentences), ""] if sentences else []


def render(runs: list, root: Path = RESULTS) -> str:
    lines = ["# Results", "",
             "Written by `run_all.sh` (`python -m amodal_lib.report`) from `manifest.json`; do not edit by hand.",
             "Every number here was computed by the notebook named beside it.", ""]
    if not runs:
        return "\n".join(lines + ["No notebook has run yet: `./run_all.sh`."]) + "\n"
    lines += ["| notebook | profile | data | commit | seconds | finished |", "|---|---|---|---|---|---|"]
    for r in runs:
        d = r.get("data", {})
        lines.append(f"| `{r['notebook']}` | {r['profile']} | {d.get('root', '?')} ({d.get('hash')}) | "
                     f"{r.get('commit')} | {r.get('seconds')} | {r.get('finished')} |")
    lines.append("")
    for r in runs:
        noted: set = set()
        lines += [f"## {r['notebook']} ({r['profile']})", ""]
        params = ", ".join(f"{k}={v}" for k, v in sorted(r.get("parameters", {}).items()))
        if params:
            lines += [f"Parameters: {params}", ""]
        for out in r.get("outputs", []):
            stem, p = Path(out).stem, root / out
            if out.endswith(".md"):
                lines += [f"**{stem}** (`{out}`)", ""]
                if p.exists():
                    lines += [p.read_text().rstrip(), ""]
                lines += reading(stem, p.parent.parent)
            elif out.endswith(".png"):
                lines += [f"![{stem}]({out})", ""]
            elif out.endswith(".json") and p.exists():
                lines += [f"**{stem}** (`{out}`)", "", "```json", p.read_text().strip(), "```", ""]
            else:
                continue
            if PAPER.get(stem) and stem not in noted:
                lines += [PAPER[stem], ""]
                noted.add(stem)
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    path = RESULTS / "manifest.json"
    runs = json.loads(path.read_text()) if path.exists() else []
    atomic_write_text(RESULTS / "README.md", render(runs))
    print(f"wrote {RESULTS / 'README.md'} ({len(runs)} notebook runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
