"""The notebooks' shared helper: profile, seeds, data, upstream artifacts, saved outputs, manifest.

Every notebook starts with::

    ctx = nb.setup("05_mask_completion", profile=profile, seed=seed, params=dict(...))
    ann = ctx.annotations("test")        # the embedded data set, or data_root's files
    ...
    ctx.save_figure(fig, "fig5_pred_vs_gt")   # results/figures/NAME.png and .pdf
    ctx.save_table(df, "table_completion")    # results/tables/NAME.csv and .md
                                              # (results/<profile>/... for smoke and paper)
    ctx.finish()                              # one line in results/manifest.json

``results/manifest.json`` records, for each (notebook, profile), its parameters, the data
it read (a hash), the git commit, the seconds it took and the files it wrote; ``run_all.sh``
turns it into ``results/README.md``.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .io import atomic_write, atomic_write_json, atomic_write_text
from .profiles import get_profile, resolve_profile

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("AMODAL_RESULTS", REPO / "results"))
DATA = Path(os.environ.get("AMODAL_DATA", REPO / "data"))

# file names of each data set's splits, tried in order; "val" falls back to part of train
SPLIT_FILES = {
    "kins": {"train": ["update_train_2020.json", "instances_train.json"],
             "val": ["update_val_2020.json", "instances_val.json"],
             "test": ["update_test_2020.json", "instances_test.json", "instances_val.json"]},
    "cocoa": {"train": ["COCO_amodal_train2014.json"], "val": ["COCO_amodal_val2014.json"],
              "test": ["COCO_amodal_val2014.json"]},
}


# the notebook that saves each artifact other notebooks load with ``ctx.load_json`` (tested
# against the notebooks' sources)
ARTIFACTS = {"threshold": "04_threshold_search"}


def git_commit() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (rev or "unknown") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def file_hash(paths) -> str:
    h = hashlib.sha1()
    for p in sorted(str(p) for p in paths):
        h.update(Path(p).name.encode())
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:12]


class Context:
    """What one notebook run knows: its name, profile and settings, data, and outputs."""

    def __init__(self, notebook: str, profile: Optional[str], seed: int, params: dict,
                 data_root: Optional[str] = None, dataset: str = "synth"):
        self.notebook = notebook
        self.profile = resolve_profile(profile)
        self.cfg = get_profile(self.profile)
        self.seed = int(seed)
        self.params = dict(params or {})
        self.data_root = data_root
        self.dataset = dataset
        self.t0 = time.time()
        self.outputs: list = []
        self._paths: Optional[dict] = None
        self._ann: dict = {}
        from .train.engine import seed_everything
        seed_everything(self.seed)

    # ---- data -------------------------------------------------------------------------
    def data(self) -> dict:
        """Paths of the data set's splits: {"train", "val", "test", "images_dir", "hash"}."""
        if self._paths is None:
            if self.data_root is None or self.dataset == "synth":
                from .data.synth import ensure_dataset
                p = dict(ensure_dataset(root=self.data_root or DATA, **self.cfg["synth"]))
            else:
                p = find_splits(self.data_root, self.dataset)
            p["hash"] = file_hash([p[s] for s in ("train", "val", "test") if p.get(s)])
            self._paths = p
        return self._paths

    def annotations(self, split: str, modal_only: bool = False):
        """The split's :class:`AnnotationSet` (read once per notebook)."""
        from .data import load_annotations
        if split not in self._ann:
            p = self.data()
            self._ann[split] = load_annotations(p[split], images_dir=p.get("images_dir"), strict=False)
        ann = self._ann[split]
        return ann.modal_view() if modal_only else ann

    @property
    def out(self) -> Path:
        """Where this run's figures and tables go: results/ for the default profile,
        results/<profile>/ for the others (so that a smoke run never overwrites default results)."""
        return RESULTS if self.profile == "default" else RESULTS / self.profile

    def run_dir(self, model: str) -> Path:
        """Where a model's checkpoints live for this profile, data and seed:
        results/runs/<profile>/<model>-<data hash>-s<seed>."""
        d = RESULTS / "runs" / self.profile / f"{model}-{self.data()['hash']}-s{self.seed}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    # ---- trained models (built on demand, so that any notebook runs alone) --------------
    def model(self, name: str, device: str = "auto", progress: bool = False, steps: Optional[int] = None):
        """The trained model ``name`` (a :mod:`amodal_lib.registry` name) of this profile, seed and
        data, in eval mode: trained in ``run_dir(name)`` on the train split (only its modal view;
        the val split for validation metrics only) unless finished (an unfinished run resumes,
        finished stages are skipped); ``steps`` overrides the profile's."""
        from . import registry
        run = self.run_dir(name)
        if registry.is_trained(name, run):
            return registry.load_model(name, run, device)
        print(f"training {name} ({self.profile}, seed {self.seed}) in {run} ...")
        t0 = time.time()
        model = registry.train(name, self.annotations("train"), run, profile=self.profile, seed=self.seed,
                               device=device, steps=steps, val_annotations=self.annotations("val"),
                               progress=progress)
        print(f"trained in {time.time() - t0:.0f} s")
        return model.eval()

    def finished_model(self, name: str, device: str = "auto"):
        """The model ``name`` if its run of this profile, seed and data has finished, else None
        (never trains: for figures that show another notebook's model when it is there)."""
        from . import registry
        run = self.run_dir(name)
        return registry.load_model(name, run, device) if registry.is_trained(name, run) else None

    def amodal_vae(self, device: str = "auto", progress: bool = False):
        """The Amodal-VAE of this profile, seed and data (all three stages): :meth:`model`."""
        return self.model("amodal-vae", device, progress)

    def pcnet(self, device: str = "auto", progress: bool = False, steps: Optional[int] = None):
        """The PCNet-M baseline of this profile, seed and data: :meth:`model`."""
        return self.model("pcnet-m", device, progress, steps)

    # ---- outputs ----------------------------------------------------------------------
    def _record(self, path: Path) -> None:
        rel = str(path.relative_to(RESULTS)) if path.is_relative_to(RESULTS) else str(path)
        if rel not in self.outputs:
            self.outputs.append(rel)

    def save_figure(self, fig, name: str, dpi: int = 150) -> Path:
        """Save a matplotlib figure as results/figures/NAME.png and NAME.pdf."""
        out = self.out / "figures"
        for ext in ("png", "pdf"):
            path = out / f"{name}.{ext}"
            atomic_write(path, lambda f, ext=ext: fig.savefig(f, format=ext, dpi=dpi, bbox_inches="tight"))
            self._record(path)
        return out / f"{name}.png"

    def save_table(self, df, name: str, floatfmt: str = ".2f") -> Path:
        """Save a pandas DataFrame as results/tables/NAME.csv and NAME.md."""
        out = self.out / "tables"
        csv = out / f"{name}.csv"
        atomic_write_text(csv, df.to_csv(index=False))
        atomic_write_text(out / f"{name}.md", to_markdown(df, floatfmt) + "\n")
        self._record(csv)
        self._record(out / f"{name}.md")
        return csv

    def save_json(self, obj: Any, name: str) -> Path:
        path = self.out / "tables" / f"{name}.json"
        atomic_write_json(path, obj)
        self._record(path)
        return path

    def load_json(self, name: str, notebook_hint: str = "") -> Any:
        """An artifact an upstream notebook saved with save_json; when it is missing, the error
        names the notebook that makes it (:data:`ARTIFACTS`, or ``notebook_hint``)."""
        path = self.out / "tables" / f"{name}.json"
        if not path.exists():
            maker = notebook_hint or ARTIFACTS.get(name, "the upstream notebook")
            raise FileNotFoundError(f"{path} is missing: run {maker} first")
        return json.loads(path.read_text())

    def finish(self) -> dict:
        """Append this run to results/manifest.json (one entry per notebook and profile)."""
        entry = {
            "notebook": self.notebook, "profile": self.profile, "parameters": self.params,
            "seed": self.seed, "data": {"dataset": self.dataset, "root": str(self.data_root or "embedded"),
                                         "hash": (self._paths or {}).get("hash")},
            "commit": git_commit(), "seconds": round(time.time() - self.t0, 1),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "outputs": self.outputs,
        }
        path = RESULTS / "manifest.json"
        runs = json.loads(path.read_text()) if path.exists() else []
        runs = [r for r in runs if (r.get("notebook"), r.get("profile")) != (self.notebook, self.profile)]
        runs.append(entry)
        runs.sort(key=lambda r: (r["profile"], r["notebook"]))
        atomic_write_json(path, runs)
        print(f"{self.notebook} ({self.profile}) done in {entry['seconds']} s; wrote {len(self.outputs)} files")
        return entry


def setup(notebook: str, profile: Optional[str] = None, seed: int = 0, params: Optional[dict] = None,
          data_root: Optional[str] = None, dataset: str = "synth") -> Context:
    """Start a notebook run: resolve the profile, seed everything, and plot in a print-ready style."""
    import matplotlib
    import seaborn as sns
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    matplotlib.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "image.cmap": "gray"})
    return Context(notebook, profile, seed, params or {}, data_root, dataset)


def find_splits(root, dataset: str) -> dict:
    """The split files of a real data set under ``root`` (KINS or COCOA layouts)."""
    root = Path(root)
    names = SPLIT_FILES.get(dataset)
    if names is None:
        raise ValueError(f"unknown dataset {dataset!r}: use 'synth', 'kins' or 'cocoa' "
                         "(or pass any annotation file to the command line)")
    out: dict = {}
    for split, cands in names.items():
        for c in cands:
            hits = [p for p in (root / c, root / "annotations" / c) if p.exists()]
            if hits:
                out[split] = str(hits[0])
                break
    if "train" not in out or "test" not in out:
        raise FileNotFoundError(f"{root}: no {dataset} train/test annotation files ({names['train'][0]}, "
                                f"{names['test'][0]})")
    out.setdefault("val", out["test"])
    for d in ("images", "training/image_2", "train2014", "."):
        if (root / d).is_dir():
            out["images_dir"] = str(root / d)
            break
    return out


def to_markdown(df, floatfmt: str = ".2f") -> str:
    """A GitHub-flavoured Markdown table (pandas' to_markdown needs tabulate; this does not)."""
    cols = [str(c) for c in df.columns]

    def cell(v):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return "-"
        if isinstance(v, (float, np.floating)):
            return format(float(v), floatfmt)
        return str(v).replace("|", "\\|")
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)
