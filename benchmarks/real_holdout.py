"""Completion on held-out real occlusions of a modal-only file, clean and with a segmenter's errors.

    python benchmarks/real_holdout.py --annotations kitti_mots_train_modal.json \\
        --holdout 0005,0015 --out runs/holdout [--profile default] [--seed 0] \\
        [--sets clean,no-occluders,boundary-noise:0.75,boundary-noise:1.75,...] \\
        [--vae-run DIR] [--pcnet-run DIR] [--device auto]

Holds the named groups (sequence folders; default: a seeded tenth of them) out of the file, trains
Amodal-VAE and PCNet-M on the rest (into ``OUT/amodal-vae`` and ``OUT/pcnet-m``; a finished run is
reused, an interrupted one resumed; ``--vae-run``/``--pcnet-run`` take runs made elsewhere, which
must not have seen the held-out groups), pastes real masks of held-out instances in front of
isolated ones, and scores every method on every set: the visible mask (the input), the convex
hull, Amodal-VAE in its fitted frame (the default), in the paper's transformer frame and in the GT
amodal box (evaluation only: it reads the answer's frame), and PCNet-M. Prints the table and writes ``OUT/holdout.csv`` and ``OUT/holdout.md``, and the robustness
curves (full and invisible mIoU against each error's strength, protocols A and B) as
``OUT/holdout_robustness_{A,B}.png`` and ``.pdf``.
``amodal_lib/experiments/real_holdout.py`` says what each set is; ``docs/design.md``, "Measured on
real shapes", quotes its numbers.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")   # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from amodal_lib import registry  # noqa: E402
from amodal_lib.data import load_annotations  # noqa: E402
from amodal_lib.experiments import real_holdout as RH  # noqa: E402
from amodal_lib.io import atomic_write, atomic_write_text  # noqa: E402
from amodal_lib.nb import to_markdown  # noqa: E402
from amodal_lib.viz.seg_input import plot_robustness  # noqa: E402

GT_BOX = "Amodal-VAE, GT amodal box (evaluation only)"
# a good and a poor segmenter's masks (mean visible IoU about 0.91 and 0.79 on KITTI MOTS), and worse;
# the same two with smooth errors, which the noise estimate reads as annotations
DEFAULT_SETS = ("clean,no-occluders,boundary-noise:0.75,boundary-noise:1.75,boundary-noise:3,"
                "segmenter-noise:0.75,segmenter-noise:1.75,segmenter-noise:3,"
                "wide-boundary-noise:0.75,wide-boundary-noise:1.75")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--annotations", required=True, help="a modal (or amodal) annotation file")
    ap.add_argument("--holdout", default="", help="groups held out, comma-separated (default: a seeded tenth)")
    ap.add_argument("--out", required=True, help="folder for the runs and the tables")
    ap.add_argument("--sets", default=DEFAULT_SETS, help="comma-separated: clean, no-occluders, KIND:PX")
    ap.add_argument("--profile", default="default")
    ap.add_argument("--seed", type=int, default=0, help="the split's pasting, the corruption, training")
    ap.add_argument("--vae-run", help="a trained Amodal-VAE run folder (default: train one in OUT)")
    ap.add_argument("--pcnet-run", help="a trained PCNet-M run folder (default: train one in OUT)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    sets = [s.strip() for s in a.sets.split(",") if s.strip()]
    try:
        for s in sets:
            RH.parse_set(s)
        ann = load_annotations(a.annotations)
        hold = RH.split(ann, [g for g in a.holdout.split(",") if g], seed=a.seed)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out)
    print(f"held out {', '.join(hold.groups)}: {len(hold.held)} instances; {len(hold.pasted)} with pasted "
          f"occlusions, {len(hold.no_occluders)} targets; training on {len(hold.train)}", flush=True)
    runs = {}
    for name, given in (("amodal-vae", a.vae_run), ("pcnet-m", a.pcnet_run)):
        t = time.perf_counter()
        runs[name] = given or str(out / name)
        if not given:
            registry.train(name, hold.train, runs[name], profile=a.profile, seed=a.seed, device=a.device)
            print(f"{name}: {runs[name]} ({time.perf_counter() - t:.0f} s)", flush=True)
    vae = registry.load_model("amodal-vae", runs["amodal-vae"], a.device)
    transformer = registry.load_model("amodal-vae", registry.variant_checkpoint("amodal-vae", runs["amodal-vae"],
                                                                               "transformer"), a.device)
    methods = [("convex hull", "convex-hull", None, {}),
               ("Amodal-VAE, fitted frame", "amodal-vae", vae, {}),
               ("Amodal-VAE, transformer frame", "amodal-vae", transformer, {"frame": "transformer"}),
               (GT_BOX, "amodal-vae", vae, {"box": "amodal-gt"}),
               ("PCNet-M", "pcnet-m", registry.load_model("pcnet-m", runs["pcnet-m"], a.device), {})]
    df = RH.evaluate(hold, methods, sets, seed=a.seed, progress=True)
    atomic_write_text(out / "holdout.csv", df.to_csv(index=False))
    md = to_markdown(df.drop(columns="seconds"))
    atomic_write_text(out / "holdout.md", md + "\n")
    curves = RH.as_robustness(df)
    curves = curves[curves.method != GT_BOX]   # evaluation only: not a method a user has
    if len(curves):
        for protocol in ("A", "B"):
            fig = plot_robustness(curves, protocol)
            for ext in ("png", "pdf"):
                atomic_write(out / f"holdout_robustness_{protocol}.{ext}",
                             lambda f, ext=ext: fig.savefig(f, format=ext, dpi=150, bbox_inches="tight"))
            plt.close(fig)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
