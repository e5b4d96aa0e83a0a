"""The command line's contract (README, "The command line") and the notebook helper's outputs."""
import json
import os

import pandas as pd
import pytest

import _fixtures as fx
from amodal_lib import cli, nb, report
from amodal_lib.profiles import get_profile, resolve_profile


def test_complete_and_evaluate_baselines(tmp_path, capsys):
    ann = fx.write_kins2020(tmp_path / "k.json")
    for method in ("visible", "convex-hull"):
        pred = tmp_path / f"{method}.json"
        assert cli.main(["complete", "--method", method, "--annotations", str(ann), "--out", str(pred)]) == 0
        rows = json.loads(pred.read_text())
        assert len(rows) == 12 and {"id", "image_id", "segmentation"} <= set(rows[0])
        out = tmp_path / f"{method}.metrics.json"
        assert cli.main(["evaluate", "--annotations", str(ann), "--predictions", str(pred), "--out", str(out)]) == 0
        m = json.loads(out.read_text())
        assert set(m["overall"]) >= {"A", "B", "n"} and m["per_category"] and m["per_bin"]
    assert "A full" in capsys.readouterr().out


def test_evaluate_missing_prediction_is_an_error(tmp_path, capsys):
    ann = fx.write_kins2020(tmp_path / "k.json")
    pred = tmp_path / "p.json"
    cli.main(["complete", "--method", "visible", "--annotations", str(ann), "--out", str(pred)])
    rows = json.loads(pred.read_text())[:-1]
    pred.write_text(json.dumps(rows))
    assert cli.main(["evaluate", "--annotations", str(ann), "--predictions", str(pred)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no prediction for 1 of 12" in err and "Traceback" not in err
    assert cli.main(["evaluate", "--annotations", str(ann), "--predictions", str(pred), "--allow-missing"]) == 0


@pytest.mark.parametrize("content, text", [('{"images": [', "invalid JSON"), ("[]", "expected a JSON object")])
def test_user_errors_are_one_line(tmp_path, capsys, content, text):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert cli.main(["complete", "--method", "visible", "--annotations", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert text in err and str(bad) in err and len(err.strip().splitlines()) == 1


def test_profiles_resolve(monkeypatch):
    monkeypatch.delenv("AMODAL_PROFILE", raising=False)
    assert resolve_profile() == "default"
    monkeypatch.setenv("AMODAL_PROFILE", "smoke")
    assert resolve_profile() == "smoke" and resolve_profile("paper") == "paper"
    with pytest.raises(ValueError, match="unknown profile"):
        resolve_profile("huge")
    p = get_profile("smoke")
    p["vae"]["width"] = -1
    assert get_profile("smoke")["vae"]["width"] != -1


def test_every_departure_of_the_paper_profile_is_named_in_readme():
    from amodal_lib.profiles import PAPER_DEPARTURES
    from amodal_lib.train.spade import settings
    readme = (nb.REPO / "README.md").read_text()
    section = readme.split("### Departures from the paper", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert rows == [f"| `{k}` | {a} | {b} | {c} |" for k, (a, b, c) in PAPER_DEPARTURES.items()]
    spade = settings("paper")   # GauGAN's losses: the terms of ours are off
    assert spade["lambda_l1"] == 0 and spade["lambda_alpha"] == 0 and spade["lambda_feat"] == 10


def test_context_saves_outputs_and_manifest(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt
    monkeypatch.setattr(nb, "RESULTS", tmp_path)
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    ctx = nb.setup("99_test", profile="smoke", seed=3, params={"a": 1})
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    ctx.save_figure(fig, "f")
    assert ctx.save_table(pd.DataFrame({"method": ["x"], "A_full": [12.345]}), "t") is None   # no path shown
    entry = ctx.finish()
    out = tmp_path / "smoke"                              # profiles other than default keep apart
    assert (out / "figures/f.png").exists() and (out / "figures/f.pdf").exists()
    assert "12.35" in (out / "tables/t.md").read_text()
    assert entry["outputs"] == ["smoke/figures/f.png", "smoke/figures/f.pdf", "smoke/tables/t.csv",
                                "smoke/tables/t.md"]
    runs = json.loads((tmp_path / "manifest.json").read_text())
    assert runs[0]["notebook"] == "99_test" and runs[0]["profile"] == "smoke" and runs[0]["seconds"] >= 0
    nb.setup("99_test", profile="smoke").finish()        # same notebook and profile: replaced, not added
    assert len(json.loads((tmp_path / "manifest.json").read_text())) == 1
    report.main()
    assert "99_test" in (tmp_path / "README.md").read_text()


def test_figures_are_byte_identical_across_runs(tmp_path, monkeypatch):
    import time

    import matplotlib.pyplot as plt
    monkeypatch.setattr(nb, "RESULTS", tmp_path)
    saved = []
    for run in range(2):
        ctx = nb.setup("99_test", profile="smoke")
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        ax.set_title("same figure")
        ctx.save_figure(fig, "f")
        plt.close(fig)
        png = ctx.out / "figures" / "f.png"
        saved.append({ext: png.with_suffix(ext).read_bytes() for ext in (".png", ".pdf")})
        time.sleep(1.1)   # a PDF stamped with its creation time would differ now
    assert saved[0] == saved[1]
    assert b"CreationDate" not in saved[0][".pdf"]


def test_missing_upstream_artifact_names_the_notebook_that_makes_it(tmp_path, monkeypatch):
    import re

    import nbformat
    monkeypatch.setattr(nb, "RESULTS", tmp_path)
    monkeypatch.setitem(nb.ARTIFACTS, "made_upstream", "04_threshold_search")
    ctx = nb.setup("05_x", profile="smoke")
    with pytest.raises(FileNotFoundError, match="run 04_threshold_search first"):
        ctx.load_json("made_upstream")   # the caller does not say who makes it
    with pytest.raises(FileNotFoundError, match="run 03_x first"):
        ctx.load_json("other", notebook_hint="03_x")
    # every artifact a notebook loads is in ARTIFACTS, and the notebook named there saves it
    monkeypatch.delitem(nb.ARTIFACTS, "made_upstream")
    sources = {p.stem: "\n".join(c.source for c in nbformat.read(p, 4).cells)
               for p in (nb.REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    loaded = {name for src in sources.values() for name in re.findall(r'load_json\(\s*"([^"]+)"', src)}
    assert loaded <= set(nb.ARTIFACTS), f"loaded but not in nb.ARTIFACTS: {sorted(loaded - set(nb.ARTIFACTS))}"
    for name, maker in nb.ARTIFACTS.items():
        assert re.search(rf'save_json\([^\n]*"{name}"\)', sources[maker]), f"{maker} does not save {name}"


def test_atomic_write_keeps_the_usual_file_mode_and_nothing_half_written(tmp_path):
    import os
    from amodal_lib.io import atomic_write, atomic_write_text
    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "a.txt", "hello")
    finally:
        os.umask(old)
    assert p.read_text() == "hello" and (p.stat().st_mode & 0o777) == 0o644

    def fail(f):
        f.write(b"partial")
        raise RuntimeError("interrupted")
    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "a.txt", fail)
    assert (tmp_path / "a.txt").read_text() == "hello"          # the old file is intact
    assert [q.name for q in tmp_path.iterdir()] == ["a.txt"]    # no temporary file left behind


def test_run_all_refuses_a_dirty_tree_but_tests_run_on_one(tmp_path):
    """run_all.sh in a scratch git checkout, with a stand-in .venv/bin/python that does nothing."""
    import shutil
    import subprocess
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(nb.REPO / "run_all.sh", repo / "run_all.sh")
    (repo / "tracked.txt").write_text("v1\n")
    fake = repo / ".venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(git + ["add", "run_all.sh", "tracked.txt"], cwd=repo, check=True)
    subprocess.run(git + ["commit", "-qm", "x"], cwd=repo, check=True)

    def run(*args):
        return subprocess.run(["bash", "run_all.sh", "--profile", "smoke", *args], cwd=repo, capture_output=True,
                              text=True, env={**os.environ, "AMODAL_RESULTS": str(tmp_path / "r")})
    assert run().returncode == 0                      # clean: runs
    (repo / "tracked.txt").write_text("v2\n")
    dirty = run()
    assert dirty.returncode == 2 and "uncommitted" in dirty.stderr and "tracked.txt" in dirty.stderr
    assert run("--allow-dirty").returncode == 0
    assert run("--test").returncode == 0              # the tests run on a dirty tree
    bad = run("--allow-dirty", "--seeds", "7")        # a spread needs two seeds or more
    assert bad.returncode == 2 and "--seeds" in bad.stderr
    assert run("--allow-dirty", "--seeds", "0,1,2").returncode == 0


def test_the_registry_has_one_row_per_family_and_each_row_what_its_role_needs():
    from amodal_lib import registry as R
    table = R.families()
    assert list(table) == list(R.ROLES) and {n: f.role for n, f in table.items()} == R.ROLES
    for name, f in table.items():
        assert f.name == name
        if f.role != R.RULE:
            assert callable(f.train) and callable(f.load) and callable(f.is_trained) and callable(f.describe)
        assert callable(f.complete) == (name in R.METHODS) and callable(f.segment) == (name in R.SEGMENTERS)
        assert (f.threshold is not None) == (name in R.METHODS)
    assert R.default_threshold("pcnet-m") == (0.2, "PCNet-M's own") and R.default_threshold("visible")[0] == 0.5
    with pytest.raises(ValueError, match="unknown method 'spade'"):
        R.complete("spade", None)
