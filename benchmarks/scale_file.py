"""A real-size annotation file for the completion benchmark: whole images of a source file repeated
(new image and annotation ids) until it holds the number of instances asked for.

    .venv/bin/python benchmarks/scale_file.py --instances 100000 --out big.json [--source ANN.json]
                                              [--synth-images 200] [--seed 0]

``--source``: any COCO-like file (plain COCO, KINS either schema) whose records are copied as they
are, so the result keeps its schema, masks and amodal labels; e.g. a KINS test file, or your own
COCO file. Without it the embedded data set is generated at KITTI's 1242x375 (``amodal synth``'s
generator, ``--synth-images`` images, its test split; KINS 2020 with amodal labels) into a
temporary folder. A repeated image gets the file name ``rNNNN/<name>`` so that no two images share
one. Prints what it wrote: images, instances, image size, the mean instances per image.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KITTI_HEIGHT, KITTI_WIDTH = 375, 1242


def repeat_images(data: dict, instances: int) -> dict:
    """``data`` (a COCO-like JSON object) with its images repeated, whole, until it holds
    ``instances`` annotations (the last image cut short if needed)."""
    by_image: dict = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    images = [im for im in data["images"] if im["id"] in by_image]
    if not images:
        raise SystemExit("the source file has no annotated image")
    out_images, out_anns = [], []
    rep = 0
    while len(out_anns) < instances:
        for im in images:
            if len(out_anns) >= instances:
                break
            new_id = len(out_images) + 1
            name = im.get("file_name") or f"{im['id']}.png"
            out_images.append(dict(im, id=new_id, file_name=f"r{rep:04d}/{name}" if rep else name))
            for a in by_image[im["id"]][: instances - len(out_anns)]:
                out_anns.append(dict(a, id=len(out_anns) + 1, image_id=new_id))
        rep += 1
    return dict(data, images=out_images, annotations=out_anns)


def synth_source(images: int, seed: int, folder: Path) -> dict:
    """The embedded data set's test split at KITTI's image size (KINS 2020, amodal labels)."""
    from amodal_lib.data.synth import generate
    paths = generate(folder / "synth", images=images, seed=seed, height=KITTI_HEIGHT, width=KITTI_WIDTH,
                     progress=False)
    return json.loads(Path(paths["test"]).read_text())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--instances", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--source", default=None, help="a COCO-like file to repeat (default: the embedded data)")
    p.add_argument("--synth-images", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    ns = p.parse_args(argv)
    if ns.source:
        data = json.loads(Path(ns.source).read_text())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            data = synth_source(ns.synth_images, ns.seed, Path(tmp))
    big = repeat_images(data, ns.instances)
    Path(ns.out).write_text(json.dumps(big))
    sizes = {(im["height"], im["width"]) for im in big["images"]}
    print(f"wrote {ns.out}: {len(big['images'])} images, {len(big['annotations'])} instances "
          f"({len(big['annotations']) / len(big['images']):.1f} per image), image sizes {sorted(sizes)}")


if __name__ == "__main__":
    main()
