"""The SPADE renderer's training cost per step on this machine, and what a profile's run costs.

    python benchmarks/bench_spade.py [--profile default] [--steps 20] [--device auto] [--threads N]

Trains the profile's renderer for ``--steps`` steps on random crops of its size (no data set
needed) through the shared engine, after two warm-up steps, and prints the CPU seconds per step
(user + system over all threads: on a busy machine the honest figure) and the steps per second of
wall time, and from them the CPU time of the profile's whole run. The run's real figures are in
``spade.timing.json`` of its run folder (``amodal_lib.train.timing.describe``).
"""
from __future__ import annotations

import argparse
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from amodal_lib.train import engine, spade  # noqa: E402


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, help="torch CPU threads (1 on a busy machine)")
    ns = ap.parse_args(argv)
    if ns.threads:
        torch.set_num_threads(ns.threads)
    cfg = spade.settings(ns.profile)
    S, B = int(cfg["crop"]), int(cfg["batch_size"])
    g = torch.Generator().manual_seed(0)
    n = 4 * B
    data = {"rgb": torch.randint(0, 256, (n, 3, S, S), dtype=torch.uint8, generator=g),
            "mask": (torch.rand(n, S, S, generator=g) > 0.5).to(torch.uint8)}
    model = spade.build_model(cfg)
    betas = (float(cfg["beta1"]), float(cfg["beta2"]))
    opts = {"g": lambda m: torch.optim.Adam([*m.generator.parameters(), *m.encoder.parameters()], cfg["lr_g"],
                                            betas=betas),
            "d": lambda m: torch.optim.Adam(m.discriminator.parameters(), cfg["lr_d"], betas=betas)}
    with tempfile.TemporaryDirectory() as tmp:
        tr = engine.Trainer(model, opts, data, batch_size=B, steps=ns.steps + 2, run_dir=tmp, name="bench",
                            step_fn=spade._step_fn(cfg, None), device=ns.device, progress=False, resume=False)
        tr.fit(until=2)
        if tr.device.type == "cuda":
            torch.cuda.synchronize()
        c0, t0 = _cpu(), time.perf_counter()
        tr.fit(until=ns.steps + 2)
        if tr.device.type == "cuda":
            torch.cuda.synchronize()
        cpu, wall = (_cpu() - c0) / ns.steps, (time.perf_counter() - t0) / ns.steps
    total = cfg["steps"] or "epochs x instances / batch"
    print(f"{platform.node()}: torch {torch.__version__}, device {tr.device}, {torch.get_num_threads()} threads")
    print(f"profile {ns.profile}: {S}x{S} crops, batch {B}, "
          f"{sum(p.numel() for p in model.generator.parameters()) / 1e6:.2f} M generator parameters")
    print(f"  {cpu:.3f} CPU s / step, {1 / wall:.2f} steps/s wall")
    if isinstance(total, int):
        print(f"  the profile's {total} steps: {total * cpu / 60:.1f} CPU minutes, {total * wall / 60:.1f} wall minutes")


if __name__ == "__main__":
    main()
