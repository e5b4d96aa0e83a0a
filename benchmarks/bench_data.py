"""Data-layer speed, printed (not asserted): load a 10k-instance KINS file, crops/s, synth images/s.

    .venv/bin/python benchmarks/bench_data.py [--images 200]
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

from amodal_lib.data import load_annotations
from amodal_lib.data.crops import crop_masks, oracle_masks
from amodal_lib.data.synth import generate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=400, help="synth images to time")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        paths = generate(Path(tmp) / "synth", images=args.images, seed=0, progress=False)
        dt = time.perf_counter() - t
        print(f"synth: {args.images} images in {dt:.2f} s = {args.images / dt:.0f} images/s "
              f"(2,000 images: {2000 / (args.images / dt):.0f} s)")
        # a 10k-instance KINS 2020 file: the train split's annotations, repeated with new ids
        d = json.loads(Path(paths["train"]).read_text())
        base, anns, k = d["annotations"], [], 0
        while len(anns) < 10000:
            for a in base:
                anns.append(dict(a, id=len(anns) + 1))
                if len(anns) == 10000:
                    break
            k += 1
        big = Path(tmp) / "big.json"
        big.write_text(json.dumps(dict(d, annotations=anns)))
        t = time.perf_counter()
        ann = load_annotations(big)
        print(f"load: {len(ann)} instances ({ann.schema}) in {time.perf_counter() - t:.2f} s")
        insts = ann.instances[:5000]
        t = time.perf_counter()
        crops = crop_masks(insts, "visible", "visible", size=28)
        dt = time.perf_counter() - t
        print(f"crop: {len(crops)} visible crops (28x28, roi_align) in {dt:.2f} s = {len(crops) / dt:.0f} crops/s")
        t = time.perf_counter()
        oracle_masks(insts[:2000])
        dt = time.perf_counter() - t
        print(f"crop + paste back: 2000 masks in {dt:.2f} s = {2000 / dt:.0f} masks/s")


if __name__ == "__main__":
    main()
