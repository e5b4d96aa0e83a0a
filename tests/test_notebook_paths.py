"""What a notebook writes names folders relative to the repository, never this machine's: the
executed notebook (papermill's output, as ``run_all.sh`` runs it), the manifest and the tables.
Notebook 10, which prints its run folder, runs at the smoke profile with its results in a scratch
folder outside the repository."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat

from amodal_lib import nb

REPO = Path(__file__).resolve().parents[1]


def test_relative_names_the_repository_and_the_scratch_folders(monkeypatch, tmp_path):
    monkeypatch.setattr(nb, "RESULTS", tmp_path / "r")
    text = f"trained in {REPO}/results/runs/x; kept {tmp_path}/r/runs/y; repo {REPO}; other {REPO}-old/z"
    assert nb.relative(text) == f"trained in results/runs/x; kept $AMODAL_RESULTS/runs/y; repo .; other {REPO}-old/z"


def test_an_executed_notebook_and_its_outputs_hold_no_absolute_path(tmp_path):
    """Notebook 10 into ``$AMODAL_RESULTS`` when set (``run_all.sh --test``'s scratch folder, outside
    the repository: the models trained there are shared), else a temporary folder."""
    results = Path(os.environ.get("AMODAL_RESULTS") or tmp_path / "results")
    out = tmp_path / "notebooks" / "10_pcnet_baseline.ipynb"
    out.parent.mkdir(parents=True)
    env = dict(os.environ, AMODAL_PROFILE="smoke", AMODAL_RESULTS=str(results), PYTHONPATH=str(REPO),
               MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-m", "papermill", "notebooks/10_pcnet_baseline.ipynb",
                          os.path.relpath(out, REPO), "--cwd", "notebooks", "--log-level", "WARNING"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    book = nbformat.read(out, as_version=4)
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for c in book.cells for o in c.get("outputs", [])), "no figure shown in the notebook"
    given = {k: book.metadata.papermill.pop(k) for k in ("input_path", "output_path")}
    assert not any(os.path.isabs(v) for v in given.values()), given   # as given: relative in run_all.sh
    # what it shows (an embedded PNG is base64: no path hides in it, and its letters could spell anything)
    written = {"the executed notebook": "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                                                  for c in book.cells for o in c.get("outputs", []))
               + str(book.metadata)}
    manifest = (results / "manifest.json").read_text()
    written["manifest.json"] = manifest
    entry = next(r for r in json.loads(manifest) if r["notebook"] == "10_pcnet_baseline" and r["profile"] == "smoke")
    assert any(o.endswith(".md") for o in entry["outputs"]) and any(o.endswith(".png") for o in entry["outputs"])
    written.update({o: (results / o).read_text() for o in entry["outputs"] if o.endswith((".md", ".csv", ".json"))})
    machine = [str(REPO), str(results), str(tmp_path), str(Path.home()) + "/"]
    found = {name: [m for m in machine if m in text] for name, text in written.items()}
    assert not any(found.values()), found


def test_the_committed_executed_notebooks_show_no_path_of_the_machine_that_ran_them():
    """What a cell's last value displays is kept in results/notebooks: never a path object of the
    machine (a saver that returned its path once showed the machine's own folder in two notebooks)."""
    books = sorted((REPO / "results" / "notebooks").glob("*.ipynb"))
    shown = {b.name: re.findall(r"PosixPath\('/[^']*'\)", b.read_text()) for b in books}
    assert not any(shown.values()), {k: v for k, v in shown.items() if v}
