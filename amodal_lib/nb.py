"""The notebooks' shared helper: profile, seeds, data, upstream artifacts, saved outputs, manifest.

Every notebook starts with::

    ctx = nb.setup("05_mask_completion", profile=profile, seed=seed, params=dict(...))
    ann = ctx.annotations("test")        # the embedded data set, or data_root's files
    ...
    ctx.save_figure(fig, "fig5_pred_vs_gt")   # results/figures/NAME.png and .pdf, shown in the notebook
    ctx.save_table(df, "table_completion")    # results/tables/NAME.csv and .md
                                              # (results/<profile>/... for smoke and paper)
    ctx.finish()                              # one line in results/manifest.json

``results/manifest.json`` records, for each (notebook, profile), its parameters, the data
it read (a hash), the git commit, the seconds it took and the files it wrote; ``run_all.sh``
turns it into ``results/README.md``, after :func:`prune_results` has removed every table, figure
and executed notebook that no notebook of the manifest wrote (:func:`stale_results` says which).

What a notebook shows and writes names folders relative to the repository, never this machine's
absolute paths: in a notebook's kernel, :func:`setup` writes every path printed (by the notebook
or the library) as :func:`relative` gives it, and the manifest records relative paths too.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from IPython import get_ipython
from IPython.display import Image, display

from . import registry
from .data import datasheet, layouts, load_annotations
from .data.synth import ensure_dataset
from .io import atomic_write, atomic_write_json, atomic_write_text
from .profiles import DATA, PROFILE_NAMES, REPO, RESULTS, get_profile, resolve_profile
from .train import folder
from .train.amodal_vae import load_model, train_amodal_vae
from .train.engine import seed_everything

# PDFs without the dates matplotlib stamps by default: the same figure gives the same bytes
PDF_METADATA = {"CreationDate": None, "ModDate": None}

# the notebook that saves each artifact other notebooks load with ``ctx.load_json`` (tested
# against the notebooks' sources). None today: the threshold, once one, has its single home in the
# Amodal-VAE run folder (:mod:`amodal_lib.thresholds`).
ARTIFACTS: dict = {}


def git_commit() -> str:
    """The commit of the code (``HEAD``), with ``+dirty`` when tracked files outside ``results/``
    differ from it: the run's own outputs under ``results/`` do not make the code dirty."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)results"], cwd=REPO, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return (rev or "unknown") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


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
        self.chosen: dict = {}   # what the notebook's learned rows were scored with (record_choice)
        self._paths: Optional[dict] = None
        self._ann: dict = {}
        self._files: dict = {}
        seed_everything(self.seed)

    # ---- data -------------------------------------------------------------------------
    def data(self) -> dict:
        """Paths of the data set's splits: {"train", "val", "test", "images_dir", "hash"}: the
        embedded data set (generated once per profile), or ``data_root``'s files for ``dataset``
        "kins", "cocoa" or "cityscapes" (:func:`amodal_lib.data.layouts.find_splits`: "val" is
        None, and "val_from_train" set, when validation is carved out of the training file)."""
        if self._paths is None:
            if self.data_root is None or self.dataset == "synth":
                p = dict(ensure_dataset(root=self.data_root or DATA, **self.cfg["synth"]))
            else:
                p = layouts.find_splits(self.data_root, self.dataset)
                if p.get("val_from_train"):
                    print(f"{self.dataset}: no validation file apart from the test one; validation is "
                          f"{p['val_from_train']:.0%} of the training images, held out (whole images, seed "
                          f"{layouts.VAL_SEED}), and training uses the rest")
            p["hash"] = layouts.data_hash(p)
            self._paths = p
        return self._paths

    def annotations(self, split: str, modal_only: bool = False):
        """The split's :class:`AnnotationSet` (each file read once per notebook)."""
        if split not in self._ann:
            def read(path):
                if path not in self._files:
                    self._files[path] = load_annotations(path, strict=False)
                return self._files[path]
            self._ann[split] = layouts.load_split(self.data(), split, read)
        ann = self._ann[split]
        return ann.modal_view() if modal_only else ann

    def datasheet(self) -> dict:
        """The data set's datasheet (per split: instances per category and occlusion bin): the
        one the embedded data set wrote when it was generated, else computed from the split
        files (:mod:`amodal_lib.data.datasheet`)."""
        path = self.data().get("datasheet_json")
        if path and Path(path).is_file():
            return json.loads(Path(path).read_text())
        return datasheet.from_annotations({s: self.annotations(s) for s in ("train", "val", "test")})

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

    def with_seed(self, seed: int) -> "Context":
        """This run with another seed: the same notebook, profile and data (the annotations already
        read are shared), its models trained with ``seed`` in their own run folders (:meth:`run_dir`);
        for studies over seeds (notebook 14). It saves nothing itself: ``self`` does."""
        other = Context(self.notebook, self.profile, seed, self.params, self.data_root, self.dataset)
        other._paths, other._ann, other._files = self.data(), self._ann, self._files
        return other

    # ---- trained models (built on demand, so that any notebook runs alone) --------------
    def model(self, name: str, device: str = "auto", progress: bool = False, steps: Optional[int] = None):
        """The trained model ``name`` (a :mod:`amodal_lib.registry` name) of this profile, seed and
        data, in eval mode: trained in ``run_dir(name)`` on the train split (only its modal view;
        the val split for validation metrics only) unless finished (an unfinished run resumes,
        finished stages are skipped); ``steps`` overrides the profile's."""
        run = self.run_dir(name)
        if registry.is_trained(name, run):
            return registry.load_model(name, run, device)
        print(f"training {name} ({self.profile}, seed {self.seed}) in {run} ...")
        t0 = time.time()
        with self._hold(run, name, steps=steps):
            model = registry.train(name, self.annotations("train"), run, profile=self.profile, seed=self.seed,
                                   device=device, steps=steps, val_annotations=self.annotations("val"),
                                   progress=progress)
        print(f"trained in {time.time() - t0:.0f} s")
        return model.eval()

    def _hold(self, run: Path, name: str, steps: Optional[int] = None, overrides: Optional[dict] = None):
        """Hold a run folder for training (:func:`amodal_lib.train.folder.hold`): locked, and refused
        when its record says it was made with other settings; a run made before runs recorded their
        settings is adopted (the folder's name says its profile, data and seed)."""
        asked = folder.settings(name, self.annotations("train"), profile=self.profile, seed=self.seed, steps=steps,
                                val_annotations=self.annotations("val"), overrides=overrides)
        return folder.hold(run, asked, adopt=True, command=f"notebook {self.notebook}")

    def finished_model(self, name: str, device: str = "auto"):
        """The model ``name`` if its run of this profile, seed and data has finished, else None
        (never trains: for figures that show another notebook's model when it is there)."""
        run = self.run_dir(name)
        return registry.load_model(name, run, device) if registry.is_trained(name, run) else None

    def train_amodal_vae(self, upto: int = 3, device: str = "auto", **overrides) -> dict:
        """This run's Amodal-VAE trained up to stage ``upto`` (notebooks 01-03): the stages that are
        missing are trained (on the train split's modal view, validated as ``amodal train`` does with
        the val split: :mod:`amodal_lib.train.validation`), finished ones reused, an unfinished one
        resumed; ``overrides``: :class:`~amodal_lib.train.amodal_vae.VAEConfig` fields (None: the
        profile's). Prints the run's log lines and returns ``train_amodal_vae``'s result dict, its
        ``model`` the one stage ``upto`` ended with (later stages may exist), with ``run_dir`` and
        ``validation_info`` (the run folder's ``validation.json``) added."""
        run = self.run_dir("amodal-vae")
        print(f"Amodal-VAE ({self.profile}, seed {self.seed}), stages 1-{upto}, in {run}")
        with self._hold(run, "amodal-vae", overrides=overrides):
            res = train_amodal_vae(self.annotations("train"), run, profile=self.profile, seed=self.seed,
                                   device=device, upto=upto, val_annotations=self.annotations("val"), progress=False,
                                   **overrides)
        res["model"] = load_model(run, device, stage=upto)
        res["run_dir"], res["validation_info"] = run, self.validation_info()
        if res["validation"] is None and res["validation_info"]:
            print(f"validation: {res['validation_info']['description']}")
        for line in res["log"]:
            print(line)
        return res

    def validation_info(self) -> Optional[dict]:
        """What this run's Amodal-VAE is validated on: its run folder's ``validation.json`` ("kind",
        "description", "files": {set: file}), or None before the run has started."""
        path = self.run_dir("amodal-vae") / "validation.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def validation_sets(self) -> dict:
        """{set name: AnnotationSet} of this run's Amodal-VAE validation (the amodal answers it is
        scored on: the val split's labels, with its images; or pasted occlusions, which have no
        image file), read from its run folder. The same sets with a segmenter's visible masks, which
        choose only the threshold for such masks, are not among them."""
        import dataclasses
        info = self.validation_info()
        if info is None:
            raise FileNotFoundError(f"{self.run_dir('amodal-vae') / 'validation.json'} is missing: train the run "
                                    "first (notebook 01, or ctx.train_amodal_vae())")
        images = self.annotations("val").images_dir if info["kind"] == "amodal labels" else None
        return {name: dataclasses.replace(load_annotations(self.run_dir("amodal-vae") / f), images_dir=images)
                for name, f in info["files"].items() if name not in info.get("visible_files", {})}

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

    def save_figure(self, fig, name: str, dpi: int = 150) -> None:
        """Save a matplotlib figure as results/figures/NAME.png and NAME.pdf, and in a notebook
        show it there (the PNG written, so what the notebook shows is the file; the figure is then
        closed, so that the notebook's own backend does not show it twice). The PDF carries no
        creation or modification date (:data:`PDF_METADATA`), so two runs write the same bytes."""
        out = self.out / "figures"
        for ext in ("png", "pdf"):
            path = out / f"{name}.{ext}"
            meta = PDF_METADATA if ext == "pdf" else None
            atomic_write(path, lambda f, ext=ext, meta=meta: fig.savefig(f, format=ext, dpi=dpi, bbox_inches="tight",
                                                                         metadata=meta))
            self._record(path)
        if in_notebook():
            display(Image(data=(out / f"{name}.png").read_bytes(), format="png"))
            plt.close(fig)

    def save_table(self, df, name: str, floatfmt: str = ".2f") -> None:
        """Save a pandas DataFrame as results/tables/NAME.csv and NAME.md; returns nothing, so that a
        cell ending with it shows no path of the machine that ran it (as :meth:`save_json`)."""
        out = self.out / "tables"
        csv = out / f"{name}.csv"
        atomic_write_text(csv, df.to_csv(index=False))
        atomic_write_text(out / f"{name}.md", to_markdown(df, floatfmt) + "\n")
        self._record(csv)
        self._record(out / f"{name}.md")

    def save_json(self, obj: Any, name: str) -> None:
        """Write ``obj`` as ``tables/<name>.json`` and record it; returns nothing, so that a cell ending
        with it shows no path of the machine that ran it."""
        path = self.out / "tables" / f"{name}.json"
        atomic_write_json(path, obj)
        self._record(path)

    def record_choice(self, name: str, value: Any) -> None:
        """Record in this run's manifest entry (``chosen``) what a result was made with, e.g. each
        learned row's checkpoint and threshold (paths are written as :func:`relative` writes them);
        returns nothing."""
        self.chosen[name] = json.loads(relative(json.dumps(value)))

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
            "seed": self.seed, "data": {"dataset": self.dataset,
                                         "root": relative(str(self.data_root)) if self.data_root else "embedded",
                                         "hash": (self._paths or {}).get("hash")},
            "commit": git_commit(), "seconds": round(time.time() - self.t0, 1),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "outputs": self.outputs,
        }
        if self.chosen:
            entry["chosen"] = self.chosen
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
    """Start a notebook run: resolve the profile, seed everything, plot in a print-ready style,
    and in a notebook print paths relative to the repository (:class:`RelativePaths`)."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    matplotlib.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "image.cmap": "gray"})
    if in_notebook():
        for name in ("stdout", "stderr"):
            if not isinstance(getattr(sys, name), RelativePaths):
                setattr(sys, name, RelativePaths(getattr(sys, name)))
    return Context(notebook, profile, seed, params or {}, data_root, dataset)


def in_notebook() -> bool:
    """Is this code running in a notebook's kernel (JupyterLab, papermill, nbval)?"""
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


@lru_cache(maxsize=8)
def _places(results: str, data: str, repo: str, home: str) -> list:
    """(compiled pattern, what it becomes) for the folders :func:`relative` rewrites, longest first."""
    places = {}
    for folder, name in ((results, "$AMODAL_RESULTS"), (data, "$AMODAL_DATA"), (repo, "."), (home, "~")):
        for form in {str(folder), str(Path(folder).resolve())}:
            inside = name != "." and Path(form).resolve().is_relative_to(repo)   # then the repository's rule does
            if len(form) > 1 and not inside:
                places.setdefault(form, name)
    return [(re.compile(re.escape(form) + r"(/|(?![\w.-]))"), name) for form, name in
            sorted(places.items(), key=lambda kv: -len(kv[0]))]


def relative(text: str) -> str:
    """``text`` with this machine's folders written so that they hold on any machine: a path in the
    repository relative to it (``results/runs/...``; the repository itself ``.``), one in
    ``$AMODAL_RESULTS`` or ``$AMODAL_DATA`` outside it under that name, one in the home folder
    under ``~``."""
    for pattern, name in _places(str(RESULTS), str(DATA), str(REPO), str(Path.home())):
        text = pattern.sub(lambda m, name=name: ("" if name == "." else name + "/") if m.group(1) else name, text)
    return text


class RelativePaths:
    """A notebook's output stream that writes what it is given through :func:`relative` (every
    other attribute is the wrapped stream's, so the kernel still routes each output to its cell)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(relative(text))
        return len(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


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


# ---- what results/ holds beyond the manifest ------------------------------------------
OUTPUT_FOLDERS = ("tables", "figures")


def _read_manifest(root: Path) -> list:
    path = root / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else []


def stale_results(root: Optional[Path] = None, notebooks: Path = REPO / "notebooks") -> dict:
    """What a results folder holds that its manifest does not account for: ``entries``, the
    manifest's runs of notebooks that no longer exist in ``notebooks``; ``files``, the files under
    each profile's ``tables/`` and ``figures/`` that no remaining run lists among its outputs, and
    the executed notebooks (``notebooks/*.ipynb``) of no remaining run; ``missing``, the outputs a
    run lists that are not there. Paths are relative to ``root`` (default :data:`RESULTS`)."""
    root = Path(root or RESULTS)
    runs = _read_manifest(root)
    live = [r for r in runs if (Path(notebooks) / f"{r.get('notebook')}.ipynb").is_file()]
    listed = {o for r in live for o in r.get("outputs", [])}
    ran = {(r.get("profile"), r.get("notebook")) for r in live}
    files = []
    for profile in PROFILE_NAMES:
        base = root if profile == "default" else root / profile
        for sub in OUTPUT_FOLDERS:
            for f in sorted((base / sub).glob("*")) if (base / sub).is_dir() else []:
                rel = f.relative_to(root).as_posix()
                if f.is_file() and rel not in listed:
                    files.append(rel)
        for f in sorted((base / "notebooks").glob("*.ipynb")) if (base / "notebooks").is_dir() else []:
            if (profile, f.stem) not in ran:
                files.append(f.relative_to(root).as_posix())
    return {"entries": [f"{r.get('notebook')} ({r.get('profile')})" for r in runs if r not in live],
            "files": files, "missing": sorted(o for o in listed if not (root / o).is_file())}


def prune_results(root: Optional[Path] = None, notebooks: Path = REPO / "notebooks") -> dict:
    """Make a results folder hold only what the notebooks of its manifest made (``run_all.sh`` calls
    this after the notebooks): the runs of notebooks that no longer exist leave the manifest, and the
    files of :func:`stale_results` are deleted. Returns what :func:`stale_results` found."""
    root = Path(root or RESULTS)
    stale = stale_results(root, notebooks)
    if stale["entries"]:
        runs = [r for r in _read_manifest(root) if (Path(notebooks) / f"{r.get('notebook')}.ipynb").is_file()]
        atomic_write_json(root / "manifest.json", runs)
    for rel in stale["files"]:
        (root / rel).unlink()
    for what in ("entries", "files"):
        for item in stale[what]:
            print(f"removed from {root}: {item} (made by no notebook of the manifest)")
    for rel in stale["missing"]:
        print(f"missing from {root}: {rel} (listed in the manifest)")
    return stale
