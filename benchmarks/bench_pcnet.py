"""Training steps/s and completion masks/s of PCNet-M, beside Amodal-VAE's, on this machine.

    python benchmarks/bench_pcnet.py [--profile default] [--steps 40] [--masks 1000] [--device auto]
                                     [--threads N] [--no-vae]

Both models train on the same embedded data set (the profile's) through the shared engine;
steps/s is read from the engine's history after a warm-up window, so it counts the whole
step (batch draw, occlusion simulation, forward, backward, optimiser) but not data loading or
checkpoints. Completion masks/s counts everything from instance records to pasted-back RLEs.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from amodal_lib.data import load_annotations  # noqa: E402
from amodal_lib.predict.pcnet import complete_instances  # noqa: E402
from amodal_lib.profiles import get_profile  # noqa: E402
from amodal_lib.train import engine, pcnet  # noqa: E402


def _rate(history: list) -> float:
    rec = [h for h in history if h.get("split") == "train" and "steps_per_s" in h]
    return rec[-1]["steps_per_s"] if rec else float("nan")


def bench_pcnet(train, test, profile, steps, n_masks, device, tmp) -> dict:
    cfg = pcnet.settings(profile)
    half = max(steps // 2, 1)
    _, hist = pcnet.train_pcnet(train, Path(tmp) / "pcnet", profile=profile, steps=2 * half, device=device,
                            resume=False, progress=False, log_every=half, checkpoint_every=0)
    model = pcnet.load_model(Path(tmp) / "pcnet", device=device)
    insts = test.instances[:n_masks]
    complete_instances(model, test, insts[:64])  # warm-up
    t0 = time.perf_counter()
    complete_instances(model, test, insts)
    dt = time.perf_counter() - t0
    return {"name": f"PCNet-M (width {cfg['width']}, crop {cfg['crop']}, batch {cfg['batch_size']})",
            "steps_per_s": {"train": _rate(hist)}, "masks_per_s": len(insts) / dt}


def bench_vae(train, test, profile, steps, n_masks, device, tmp) -> dict:
    from amodal_lib.predict import amodal_vae as vae_model
    from amodal_lib.train import amodal_vae as vae_training
    half = max(steps // 2, 1)
    over = {f"stage{s}_steps": 2 * half for s in (1, 2, 3)}
    res = vae_training.train_amodal_vae(train, Path(tmp) / "vae", profile=profile, device=device, resume=False,
                              progress=False, log_every=half, checkpoint_every=0, eval_every=0, **over)
    rates = {f"stage {s}": _rate(h) for s, h in res["history"].items()}
    model = res["model"]
    insts = test.instances[:n_masks]
    vae_model.complete_instances(model, insts[:64])
    t0 = time.perf_counter()
    vae_model.complete_instances(model, insts)
    dt = time.perf_counter() - t0
    cfg = res["config"]
    return {"name": f"Amodal-VAE (width {cfg.get('width')}, batch {cfg.get('batch_size')})",
            "steps_per_s": rates, "masks_per_s": len(insts) / dt}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="default", choices=("smoke", "default", "paper"))
    ap.add_argument("--steps", type=int, default=40, help="training steps timed (after as many warm-up steps)")
    ap.add_argument("--masks", type=int, default=1000, help="test instances completed")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[1] / "data"))
    ap.add_argument("--no-vae", action="store_true", help="time PCNet-M only")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    from amodal_lib.data.synth import ensure_dataset
    paths = ensure_dataset(root=a.data_root, progress=False, **get_profile(a.profile)["synth"])
    train, test = load_annotations(paths["train"]), load_annotations(paths["test"])
    dev = engine.resolve_device(a.device)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), device {dev}; profile {a.profile}; "
          f"{len(train)} training and {len(test)} test instances; load average "
          f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(bench_pcnet(train, test, a.profile, a.steps, a.masks, a.device, tmp))
        if not a.no_vae:
            try:
                rows.append(bench_vae(train, test, a.profile, a.steps, a.masks, a.device, tmp))
            except (ImportError, AttributeError, TypeError) as e:
                print(f"Amodal-VAE not timed ({type(e).__name__}: {e})")
    print(f"\n{'model':58s} {'train steps/s':>28s} {'complete masks/s':>17s}")
    for r in rows:
        steps = ", ".join(f"{k} {v:.2f}" for k, v in r["steps_per_s"].items())
        print(f"{r['name']:58s} {steps:>28s} {r['masks_per_s']:17.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
