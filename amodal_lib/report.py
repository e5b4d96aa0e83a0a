"""Write ``results/README.md`` from ``results/manifest.json`` (``python -m amodal_lib.report``).

Every table and figure is listed with the notebook, profile, data and commit that made it;
where the paper reports a number for a table, it stands beside ours.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .io import atomic_write_text
from .nb import RESULTS

# The paper's KINS numbers (supplementary Table 1 and text); protocol A (pooled) scale.
PAPER = {
    "table_completion": "Amodal-VAE 94.68 full / 62.85 invisible mIoU; GT visible mask 87.03 full (KINS, GT visible input)",
    "table_segmentation_input": "predicted masks 80.83 full; Amodal-VAE 86.03 / 60.71; Deocclusion 84.94 / 52.93 (KINS)",
    "threshold": "best threshold t = 0.1 on the KINS validation set",
    "threshold_choice": "t = 0.1, searched on the KINS validation set (supplementary 3.1)",
    "pcnet_test_miou": "Deocclusion 84.94 full / 52.93 invisible mIoU on KINS with predicted masks as input "
                       "(supplementary Table 1); Amodal-VAE 86.03 / 60.71 there",
    "gap_mode_vs_best": "the best-of-20 curve lies above the posterior mode's, and the gap narrows as the "
                        "occluded area becomes smaller (supplementary Fig 1, KINS)",
    "gap_trend": "the gap between best-of-20 and the posterior mode narrows with less occlusion (Fig 1)",
    "posterior_width": "the more occluded an object, the wider its predicted posterior (supplementary Fig 4, KINS)",
}


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
        lines += [f"## {r['notebook']} ({r['profile']})", ""]
        params = ", ".join(f"{k}={v}" for k, v in sorted(r.get("parameters", {}).items()))
        if params:
            lines += [f"Parameters: {params}", ""]
        for out in r.get("outputs", []):
            stem = Path(out).stem
            if out.endswith(".md"):
                p = root / out
                lines += [f"**{stem}** (`{out}`)", ""]
                if p.exists():
                    lines += [p.read_text().rstrip(), ""]
                if stem in PAPER:
                    lines += [f"Paper: {PAPER[stem]}.", ""]
            elif out.endswith(".png"):
                lines += [f"![{stem}]({out})", ""]
            elif out.endswith(".json") and stem in PAPER:
                p = root / out
                if p.exists():
                    lines += [f"**{stem}**: `{p.read_text().strip()[:300]}`; paper: {PAPER[stem]}.", ""]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    path = RESULTS / "manifest.json"
    runs = json.loads(path.read_text()) if path.exists() else []
    atomic_write_text(RESULTS / "README.md", render(runs))
    print(f"wrote {RESULTS / 'README.md'} ({len(runs)} notebook runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
