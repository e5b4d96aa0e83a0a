"""Amodal-VAE speed on this machine: training steps/s at batch 128 per width, completion masks/s.

    .venv/bin/python benchmarks/bench_vae.py [--widths 16 32 64] [--steps 20] [--threads N]
                                             [--annotations ANN.json] [--device auto]

Prints, for each width: parameters, stage-1 and stage-2 training steps/s (batch 128, the real
loss modules on random masks), and the time to complete 10k masks with ``AmodalVAE.complete``
(posterior mode + transformer boxes, batch 4096). With ``--annotations`` it also times the
whole ``complete_instances`` path (crop, complete, paste back to RLE) on that file's instances,
with the transformer's frame and with the frame fitted to the known pixels.

On a shared machine, use ``--threads 1``: torch's OpenMP threads spin-wait when another process
holds the other core, which can make 2 threads several times slower than 1.
"""
from __future__ import annotations

import argparse
import time

import torch


def _stage_rate(vae, stage: int, steps: int, batch: int = 128) -> float:
    from amodal_lib.train.amodal_vae_stages import SIM, Stage1, Stage2, VAEConfig
    cfg = VAEConfig(width=vae.config["width"])
    dev = next(vae.parameters()).device
    g = torch.Generator().manual_seed(0)

    def masks(n):  # blobby random masks, uint8 like the pre-cropped data
        m = torch.nn.functional.avg_pool2d(torch.rand(n, 1, SIM // 4, SIM // 4, generator=g), 3, 1, 1)
        m = torch.nn.functional.interpolate(m, size=(SIM, SIM), mode="bilinear", align_corners=False)[:, 0]
        return ((m > 0.5).float() * 255).to(torch.uint8)

    pool = masks(1024)
    wh = torch.rand(1024, 2, generator=g) * 60 + 10
    mod = Stage1(vae, cfg) if stage == 1 else Stage2(vae, cfg, pool, wh)
    opt = torch.optim.Adam(mod.parameters_to_train(), 1e-4)
    mod.train()
    box = torch.cat([torch.rand(batch, 2, generator=g) * 400, torch.zeros(batch, 2)], 1)
    box[:, 2:] = box[:, :2] + wh[:batch]
    batch_data = {"full": pool[:batch].to(dev), "full_wh": wh[:batch].to(dev), "full_box": box.to(dev),
                  "full_hw": torch.tensor([[375.0, 1242.0]]).expand(batch, 2).to(dev)}

    def step(t):
        out = mod(batch_data, t)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()

    for t in range(3):
        step(t)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for t in range(steps):
        step(t)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - t0)


def _complete_time(vae, n: int = 10_000, batch: int = 4096) -> float:
    dev = next(vae.parameters()).device
    x = (torch.rand(n, 28, 28) > 0.5).float()
    vae.eval()
    vae.complete(x[:64].to(dev))
    t0 = time.perf_counter()
    for s in range(0, n, batch):
        r = vae.complete(x[s:s + batch].to(dev))
        r.probs.cpu()
    return time.perf_counter() - t0


def main(argv=None) -> None:
    from amodal_lib.models.amodal_vae import AmodalVAE
    from amodal_lib.predict.amodal_vae import complete_instances
    from amodal_lib.train.engine import resolve_device
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--annotations", default=None, help="also time complete_instances on this file")
    p.add_argument("--device", default="cpu")
    ns = p.parse_args(argv)
    if ns.threads:
        torch.set_num_threads(ns.threads)
    dev = resolve_device(ns.device)
    print(f"device {dev}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'width':>5} {'params':>10} {'stage1 steps/s':>15} {'stage2 steps/s':>15} {'10k masks s':>12} {'masks/s':>9}")
    for w in ns.widths:
        torch.manual_seed(0)
        vae = AmodalVAE(width=w).to(dev)
        r1 = _stage_rate(vae, 1, ns.steps)
        r2 = _stage_rate(vae, 2, ns.steps)
        t = _complete_time(vae)
        n = sum(p.numel() for p in vae.parameters())
        print(f"{w:>5} {n:>10,} {r1:>15.2f} {r2:>15.2f} {t:>12.2f} {10_000 / t:>9.0f}", flush=True)
    if ns.annotations:
        from amodal_lib.data import load_annotations
        ann = load_annotations(ns.annotations)
        for w in ns.widths:
            vae = AmodalVAE(width=w).to(dev).eval()
            for frame in ("transformer", "fit"):
                t0 = time.perf_counter()
                complete_instances(vae, ann.instances, frame=frame)
                dt = time.perf_counter() - t0
                print(f"complete_instances, width {w}, frame {frame}: {len(ann)} instances of {ann.path} in "
                      f"{dt:.2f} s ({len(ann) / dt:.0f} masks/s, crop + complete + paste to RLE)")


if __name__ == "__main__":
    main()
