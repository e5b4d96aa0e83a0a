"""results/ holds only what the notebooks of its manifest made: the committed folder is checked
against its manifest, and run_all.sh's pruning is checked on a scratch folder."""
import json

from amodal_lib import nb

RESULTS = nb.REPO / "results"


def test_committed_results_hold_exactly_what_the_manifest_lists():
    stale = nb.stale_results(RESULTS)
    assert stale["files"] == [], f"in results/ but written by no notebook of the manifest: {stale['files']}"
    assert stale["missing"] == [], f"listed in results/manifest.json but not in results/: {stale['missing']}"
    assert stale["entries"] == [], f"manifest runs of notebooks that no longer exist: {stale['entries']}"


def test_every_executed_notebook_has_its_run_in_the_manifest():
    runs = {(r["profile"], r["notebook"]) for r in json.loads((RESULTS / "manifest.json").read_text())}
    executed = {("default", p.stem) for p in (RESULTS / "notebooks").glob("*.ipynb")}
    assert executed <= runs


def test_prune_removes_what_no_notebook_of_the_manifest_wrote(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "01_a.ipynb").write_text("{}")
    root = tmp_path / "results"
    keep = ["tables/a.csv", "tables/a.md", "figures/a.png", "smoke/tables/s.json", "notebooks/01_a.ipynb"]
    drop = ["tables/threshold.json", "figures/old.pdf", "smoke/figures/x.png", "notebooks/02_gone.ipynb",
            "tables/g.csv", "smoke/notebooks/01_a.ipynb"]
    for rel in keep + drop + ["runs/default/vae/stage1.pt", "README.md"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    runs = [{"notebook": "01_a", "profile": "default", "outputs": keep[:3] + ["tables/missing.md"]},
            {"notebook": "01_a", "profile": "paper", "outputs": []},
            {"notebook": "01_a", "profile": "smoke", "outputs": ["smoke/tables/s.json"]},  # ran once, never kept
            {"notebook": "02_gone", "profile": "default", "outputs": ["tables/g.csv"]}]
    (root / "manifest.json").write_text(json.dumps(runs))
    (root / "smoke/notebooks").mkdir(parents=True, exist_ok=True)
    stale = nb.stale_results(root, notebooks)
    assert stale["entries"] == ["02_gone (default)"]
    assert stale["missing"] == ["tables/missing.md"]
    # the smoke run's executed notebook is listed by (profile, notebook): it stays
    assert sorted(stale["files"]) == sorted(set(drop) - {"smoke/notebooks/01_a.ipynb"})
    nb.prune_results(root, notebooks)
    assert all((root / rel).exists() for rel in keep + ["runs/default/vae/stage1.pt", "README.md",
                                                        "smoke/notebooks/01_a.ipynb"])
    assert not any((root / rel).exists() for rel in set(drop) - {"smoke/notebooks/01_a.ipynb"})
    assert [r["notebook"] for r in json.loads((root / "manifest.json").read_text())] == ["01_a"] * 3
    after = nb.stale_results(root, notebooks)
    assert after["files"] == [] and after["entries"] == []
