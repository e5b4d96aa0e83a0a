"""A tiny embedded data set for the Amodal-VAE tests, generated once per test session."""
from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path


@functools.lru_cache(maxsize=None)
def tiny_dataset(images: int = 30) -> dict:
    """Split paths of a small synthetic KINS-2020 data set (``amodal_lib.data.synth``)."""
    from amodal_lib.data.synth import generate
    root = tempfile.mkdtemp(prefix="amodal-vae-tests-")
    atexit.register(shutil.rmtree, root, ignore_errors=True)  # a test session leaves nothing in /tmp
    out = Path(root) / "synth"
    return generate(out, images=images, seed=0, height=160, width=512, workers=1, progress=False)


def without_amodal(src, dst) -> Path:
    """A copy of a KINS-2020 file with every amodal field (a_segm, a_bbox, a_area) deleted."""
    data = json.loads(Path(src).read_text())
    for a in data["annotations"]:
        for k in ("a_segm", "a_bbox", "a_area"):
            a.pop(k, None)
    Path(dst).write_text(json.dumps(data))
    return Path(dst)


# a few steps of every stage, small enough for CI
TINY = dict(width=8, latent_dim=16, hidden=32, batch_size=16, stage1_steps=6, stage2_steps=6, stage3_steps=6,
            kl_t_begin=2, kl_alpha=0.9, eval_every=3, checkpoint_every=3, log_every=2, eval_max_instances=20)
