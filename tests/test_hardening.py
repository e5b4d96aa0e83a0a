"""Bad input never exhausts memory, overwrites data or leaks a traceback.

Every malformed file, checkpoint, flag and output path a careful new user was seen to try is
fed to the command line, and the contract is checked each time: exit code 2, one line on
stderr naming the file (and the record and field where there is one), no traceback, no input
and no earlier output changed. Annotation and prediction files are read by a worker process
under a memory limit (``_cli_worker.py``), so that a reader that lets a bad coordinate reach
pycocotools fails fast here instead of exhausting the machine; Hypothesis mutates small valid
files of each schema on top of the hand-written cases (derandomised: CI is repeatable).
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import pickle
import random
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import _fixtures as fx
from amodal_lib import cli, registry
from amodal_lib.data import load_annotations, synth
from amodal_lib.errors import OtherRunError
from amodal_lib.train import engine as E
from amodal_lib.train import folder

ROOT = Path(__file__).resolve().parents[1]
MEMORY_LIMIT = 3 * 2 ** 30   # bytes of address space for the reading worker
NAN, INF = float("nan"), float("inf")


# --------------------------------------------------------------------------- helpers
def snapshot(*paths) -> dict:
    """{path: sha1} of every file under ``paths`` (files or folders), to show nothing changed."""
    out = {}
    for p in map(Path, paths):
        files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else []
        for f in files:
            out[str(f)] = hashlib.sha1(f.read_bytes()).hexdigest()
    return out


def assert_user_error(rc: int, err: str, *needles: str, absent: tuple = (), after_progress: bool = False) -> str:
    """Exit code 2 and one line on stderr holding every needle (with ``after_progress``, the
    last line, after what a command printed about its progress)."""
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert rc == 2, f"exit code {rc}, stderr:\n{err}"
    assert "Traceback" not in err, err
    if after_progress:
        lines = lines[-1:]
        assert sum("error:" in ln for ln in err.splitlines()) == 1, err
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    for n in needles:
        assert n in lines[0], f"{n!r} not in: {lines[0]}"
    for n in absent:
        assert n not in lines[0], f"{n!r} in: {lines[0]}"
    return lines[0]


def run(capsys, *argv) -> tuple[int, str]:
    capsys.readouterr()
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr().err


class Worker:
    """One ``_cli_worker.py`` process under ``MEMORY_LIMIT``; ``run(argv) -> (rc, stderr)``.
    A process that died (the failure a test reports) is replaced for the next command."""

    def __init__(self):
        self.proc = None

    def _start(self):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("_cli_worker.py")),
                                      str(MEMORY_LIMIT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)

    def run(self, *argv) -> tuple[int, str]:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.proc.stdin.write(json.dumps([str(a) for a in argv]) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:  # killed: a segfault, or the memory limit hit outside Python's reach
            self.proc.wait(timeout=10)
            raise AssertionError(f"the CLI process died (exit {self.proc.returncode}) on {argv}:\n"
                                 f"{self.proc.stderr.read()[-3000:]}")
        res = json.loads(line)
        return res["rc"], res["err"]

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.close()


def _write(path: Path, doc) -> Path:
    path.write_text(json.dumps(doc))  # NaN and Infinity are written as such (Python reads them back)
    return path


def complete_visible(worker, ann: Path, out: Path) -> tuple[int, str]:
    return worker.run("complete", "--method", "visible", "--annotations", ann, "--out", out)


def check_refused(worker, tmp_path, ann: Path, *needles, absent=()) -> str:
    """``complete`` on a bad annotation file: one line naming it, and no file touched."""
    out = tmp_path / "earlier_pred.json"
    out.write_text("earlier output")
    before = snapshot(ann, out)
    rc, err = complete_visible(worker, ann, out)
    line = assert_user_error(rc, err, str(ann), *needles, absent=absent)
    assert snapshot(ann, out) == before
    return line


# --------------------------------------------------------------------------- annotation files
def _kins(tmp_path, mutate) -> Path:
    doc = json.loads(fx.write_kins2020(tmp_path / "kins.json").read_text())
    mutate(doc)
    return _write(tmp_path / "kins.json", doc)


def _set(obj_path, value):
    def mutate(doc):
        *head, last = obj_path
        node = doc
        for k in head:
            node = node[k]
        node[last] = value
    return mutate


A0_POLY = ("annotations", 0, "a_segm", 0)  # annotation 1's amodal polygon


@pytest.mark.parametrize("value, text", [(NAN, "nan, not a finite number"), (INF, "inf, not a finite number"),
                                         (-INF, "-inf, not a finite number"), (1e9, "far outside"),
                                         (-1e9, "far outside"), (1e300, "far outside")])
def test_bad_polygon_coordinates_are_refused_before_decoding(worker, tmp_path, value, text):
    ann = _kins(tmp_path, _set(A0_POLY + (3,), value))
    check_refused(worker, tmp_path, ann, "annotation 1", "'a_segm'", text)


def test_bad_coordinates_in_every_schema(worker, tmp_path):
    coco = json.loads(fx.write_coco(tmp_path / "coco.json", polygons=True).read_text())
    coco["annotations"][1]["segmentation"][0][0] = 1e9
    check_refused(worker, tmp_path, _write(tmp_path / "coco.json", coco), "annotation 2", "'segmentation'",
                  "far outside")
    cocoa = json.loads(fx.write_cocoa(tmp_path / "cocoa.json").read_text())
    cocoa["annotations"][1]["regions"][0]["segmentation"][4] = NAN
    check_refused(worker, tmp_path, _write(tmp_path / "cocoa.json", cocoa), "annotation 2001", "'segmentation'",
                  "not a finite number")


def test_a_polygon_whose_perimeter_would_exhaust_memory(worker, tmp_path):
    zigzag = [v for i in range(400) for v in (0, i % 100, 199, (i + 1) % 100)]  # inside, but 400 crossings
    check_refused(worker, tmp_path, _kins(tmp_path, _set(A0_POLY, zigzag)), "annotation 1", "polygon too long")


def test_an_image_too_large_to_decode(worker, tmp_path):
    def huge(doc):
        doc["images"][0].update(height=10 ** 6, width=10 ** 6)
    check_refused(worker, tmp_path, _kins(tmp_path, huge), "images[0].height/width", "over the limit")


def test_duplicate_annotation_id(worker, tmp_path):
    check_refused(worker, tmp_path, _kins(tmp_path, _set(("annotations", 1, "id"), 1)),
                  "annotation 1", "'id'", "duplicate annotation id", "annotations[0]", "annotations[1]")


def test_duplicate_image_id_is_not_called_unknown(worker, tmp_path):
    check_refused(worker, tmp_path, _kins(tmp_path, _set(("images", 1, "id"), 1)),
                  "images[1].id", "duplicate image id 1", absent=("unknown",))


def test_duplicate_image_record_in_cocoa(worker, tmp_path):
    doc = json.loads(fx.write_cocoa(tmp_path / "cocoa.json").read_text())
    doc["annotations"][1]["image_id"] = doc["annotations"][0]["image_id"]
    check_refused(worker, tmp_path, _write(tmp_path / "cocoa.json", doc), "annotations[1].image_id", "duplicate")


@pytest.mark.parametrize("where, value, needles", [
    (("annotations", 1, "id"), [2], ("'id'", "must be an integer", "[2]")),
    (("annotations", 1, "image_id"), [1], ("annotation 2", "'image_id'", "must be an integer")),
    (("annotations", 1, "category_id"), "car", ("annotation 2", "'category_id'", "'car'")),
    (("annotations", 1, "category_id"), 2.5, ("annotation 2", "'category_id'", "2.5")),
    (("annotations", 1, "ico_id"), "front", ("annotation 2", "'ico_id'")),
    (("images", 1, "height"), "abc", ("images[1].height", "must be an integer", "'abc'")),
    (("images", 1, "width"), NAN, ("images[1].width", "must be an integer")),
    (("images", 1, "id"), {"a": 1}, ("images[1].id", "must be an integer")),
    (("categories", 0, "id"), "x", ("categories[0].id", "must be an integer")),
    (("annotations", 0, "i_segm", "size"), [NAN, 200], ("annotation 1", "'i_segm'", "size", "two integers")),
    (("annotations", 0, "i_segm", "counts"), "\u00e9\u00e9", ("annotation 1", "'i_segm'", "ASCII")),
    (("annotations", 0, "i_segm", "counts"), "~~~~", ("annotation 1", "'i_segm'", "outside the RLE alphabet")),
    (("annotations", 0, "i_segm", "counts"), [10, "a"], ("annotation 1", "'i_segm'", "non-negative integers")),
    (("annotations", 0, "i_bbox"), [1, 1, -3, 4], ("annotation 1", "'i_bbox'", "negative width or height")),
    (("annotations", 0, "i_bbox"), [1, 1, NAN, 4], ("annotation 1", "'i_bbox'", "finite")),
])
def test_bad_values_are_named(worker, tmp_path, where, value, needles):
    line = check_refused(worker, tmp_path, _kins(tmp_path, _set(where, value)), *needles)
    assert "zero-size" not in line and "invalid literal" not in line


@pytest.mark.parametrize("content, text", [(b"", "empty file"), (b'{"images": "caf\xe9"}', "not a JSON text file"),
                                           (b"\x80\x81abc", "not a JSON text file"), (b"[" * 100000, "nested too deeply"),
                                           (b"1" * 5000, "invalid JSON"), (b'{"images": [', "invalid JSON")])
def test_unreadable_files(worker, tmp_path, content, text):
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    check_refused(worker, tmp_path, bad, text)


# --------------------------------------------------------------------------- prediction files
@pytest.fixture
def predictions(worker, tmp_path):
    ann = fx.write_kins2020(tmp_path / "k.json")
    pred = tmp_path / "pred.json"
    assert complete_visible(worker, ann, pred)[0] == 0
    return ann, pred


def check_evaluate_refused(worker, tmp_path, ann, pred, *needles, absent=()) -> str:
    out = tmp_path / "earlier_metrics.json"
    out.write_text("earlier output")
    before = snapshot(ann, pred, out)
    rc, err = worker.run("evaluate", "--annotations", ann, "--predictions", pred, "--out", out)
    line = assert_user_error(rc, err, *needles, absent=absent)
    assert snapshot(ann, pred, out) == before
    return line


@pytest.mark.parametrize("value, text", [(NAN, "not a finite number"), (INF, "not a finite number"),
                                         (1e9, "far outside")])
def test_bad_coordinates_in_predictions(worker, tmp_path, predictions, value, text):
    ann, pred = predictions
    rows = json.loads(pred.read_text())
    rows[2]["segmentation"] = [[10, 10, 50, 10, value, 40]]
    _write(pred, rows)
    check_evaluate_refused(worker, tmp_path, ann, pred, str(pred), "prediction for annotation 3", text)


@pytest.mark.parametrize("mutate, needles", [
    (lambda rows: rows[1].update(id=rows[0]["id"]), ("prediction for annotation 1", "duplicate", "[0]", "[1]")),
    (lambda rows: rows[1].update(id=[2]), ("[1].id", "must be an integer")),
    (lambda rows: rows[1].update(id=999), ("prediction for annotation 999", "no such annotation")),
    (lambda rows: rows[1]["segmentation"].update(size=[NAN, 1]), ("prediction for annotation 2", "size")),
])
def test_bad_prediction_records(worker, tmp_path, predictions, mutate, needles):
    ann, pred = predictions
    rows = json.loads(pred.read_text())
    mutate(rows)
    _write(pred, rows)
    check_evaluate_refused(worker, tmp_path, ann, pred, str(pred), *needles)


def test_non_utf8_predictions_file(worker, tmp_path, predictions):
    ann, pred = predictions
    pred.write_bytes(b"\x93\x94" + pred.read_bytes())
    check_evaluate_refused(worker, tmp_path, ann, pred, str(pred), "not a JSON text file")


# --------------------------------------------------------------------------- outputs never overwrite inputs
def test_complete_out_is_never_the_annotation_file(tmp_path, capsys):
    ann = fx.write_kins2020(tmp_path / "k.json")
    link = tmp_path / "link.json"
    link.symlink_to(ann)
    hard = tmp_path / "hard.json"
    os.link(ann, hard)
    before = snapshot(ann)
    for out in (ann, tmp_path / "." / "k.json", link, hard):
        rc, err = run(capsys, "complete", "--method", "visible", "--annotations", ann, "--out", out)
        assert_user_error(rc, err, "is the annotation file", "never overwrites an input")
        assert snapshot(ann) == before and link.is_symlink()


def test_evaluate_out_is_never_an_input(tmp_path, capsys):
    ann = fx.write_kins2020(tmp_path / "k.json")
    pred = tmp_path / "p.json"
    assert run(capsys, "complete", "--method", "visible", "--annotations", ann, "--out", pred)[0] == 0
    before = snapshot(ann, pred)
    for out, what in ((pred, "predictions file"), (ann, "annotation file")):
        rc, err = run(capsys, "evaluate", "--annotations", ann, "--predictions", pred, "--out", out)
        assert_user_error(rc, err, what)
    assert snapshot(ann, pred) == before


def test_complete_out_is_never_a_checkpoint(tmp_path, capsys, vae_run):
    ann = fx.write_kins2020(tmp_path / "k.json")
    before = snapshot(vae_run)
    for out in (vae_run / "stage3.pt", vae_run / "threshold.json"):
        rc, err = run(capsys, "complete", "--method", "amodal-vae", "--annotations", ann, "--out", out,
                      "--checkpoint", vae_run)
        assert_user_error(rc, err, str(out), "checkpoint folder")
    assert snapshot(vae_run) == before


def test_unwritable_outputs(tmp_path, capsys):
    ann = fx.write_kins2020(tmp_path / "k.json")
    ro_file = tmp_path / "ro.json"
    ro_file.write_text("keep me")
    ro_file.chmod(0o444)
    ro_dir = tmp_path / "ro_dir"
    ro_dir.mkdir()
    ro_dir.chmod(0o555)
    (tmp_path / "a_file").write_text("x")
    try:
        for out, text in ((tmp_path, "is a folder"), (ro_file, "read-only"), (ro_dir / "p.json", "read-only"),
                          (tmp_path / "a_file" / "p.json", "not a folder")):
            rc, err = run(capsys, "complete", "--method", "visible", "--annotations", ann, "--out", out)
            assert_user_error(rc, err, text)
        assert ro_file.read_text() == "keep me" and list(ro_dir.iterdir()) == []
    finally:
        ro_dir.chmod(0o755)


# --------------------------------------------------------------------------- checkpoints
def _corrupt_checkpoints(folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    good = folder / "good.pt"
    torch.save({"model": {"w": torch.zeros(1000)}, "extra": {}}, good)
    raw = good.read_bytes()
    files = {"truncated": (raw[: len(raw) // 2], "truncated or corrupt"),
             "random": (bytes(range(256)) * 4, "not a PyTorch checkpoint"),
             "empty": (b"", "empty file")}
    out = {}
    for name, (data, text) in files.items():
        (folder / f"{name}.pt").write_bytes(data)
        out[name] = (folder / f"{name}.pt", text)
    torch.save([1, 2, 3], folder / "list.pt")
    out["list"] = (folder / "list.pt", "holds a list")
    torch.save({"ns": argparse.Namespace(a=1)}, folder / "pickle.pt")
    out["pickle"] = (folder / "pickle.pt", "refused")
    with open(folder / "bare.pt", "wb") as f:   # pickle.dump's own file: torch's loader warns about its protocol
        pickle.dump({"w": [1.0, 2.0]}, f, protocol=4)
    out["bare"] = (folder / "bare.pt", "refused: a bare pickle")
    good.unlink()
    return out


@pytest.mark.parametrize("method", ["amodal-vae", "pcnet-m"])
def test_bad_checkpoint_files(tmp_path, capsys, method):
    ann = fx.write_kins2020(tmp_path / "k.json")
    for name, (ck, text) in _corrupt_checkpoints(tmp_path / "cks").items():
        with warnings.catch_warnings(record=True) as said:   # what would reach stderr besides the line
            warnings.simplefilter("always")
            rc, err = run(capsys, "complete", "--method", method, "--annotations", ann, "--out", tmp_path / "p.json",
                          "--checkpoint", ck)
        assert [str(w.message) for w in said] == [], name
        line = assert_user_error(rc, err, str(ck), text)
        assert not (tmp_path / "p.json").exists(), name
        if name == "pickle":
            assert "argparse.Namespace" in line and len(line) < 300


def test_a_refused_pickle_is_one_line_as_a_real_process(tmp_path):
    """As a shell sees it: one line on stderr, no warning of torch's before it."""
    ann = fx.write_kins2020(tmp_path / "k.json")
    ck, text = _corrupt_checkpoints(tmp_path / "cks")["bare"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("PYTHONWARNINGS", None)
    r = subprocess.run([sys.executable, "-m", "amodal_lib", "complete", "--method", "amodal-vae", "--annotations",
                        str(ann), "--out", str(tmp_path / "p.json"), "--checkpoint", str(ck)],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert_user_error(r.returncode, r.stderr, str(ck), text, "(protocol 4)", "is not opened")


def test_load_checkpoint_errors_are_typed(tmp_path):
    from amodal_lib.errors import CheckpointError, MissingCheckpointError
    for ck, text in _corrupt_checkpoints(tmp_path).values():
        with pytest.raises(CheckpointError, match=text):
            E.load_checkpoint(ck)
    with pytest.raises(MissingCheckpointError):
        E.load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="not a checkpoint file"):
        E.load_checkpoint(tmp_path)


@pytest.fixture
def vae_run(tmp_path):
    """A run folder holding an (untrained) Amodal-VAE stage-3 checkpoint and its threshold."""
    from amodal_lib.models.amodal_vae import AmodalVAE
    torch.manual_seed(0)
    vae = AmodalVAE(width=8, latent_dim=8, hidden=16)
    run_dir = tmp_path / "run"
    E.save_checkpoint(run_dir / "stage3.pt", {"model": vae.state_dict(), "extra": {"model": vae.config, "stage": 3},
                                              "done": True, "history": []})
    (run_dir / "threshold.json").write_text(json.dumps({"threshold": 0.5}))
    return run_dir


@pytest.mark.parametrize("content, text", [("{}", "field 'threshold': missing"), ("{", "invalid JSON"),
                                           ('{"threshold": "high"}', "must be a number"),
                                           ('{"threshold": NaN}', "must be a number"), ("[0.3]", "JSON object"),
                                           ('{"threshold": 0.5, "mirror": "yes"}', "field 'mirror': must be true or false")])
def test_bad_stored_threshold_names_the_file(tmp_path, capsys, vae_run, content, text):
    ann = fx.write_kins2020(tmp_path / "k.json")
    (vae_run / "threshold.json").write_text(content)
    rc, err = run(capsys, "complete", "--method", "amodal-vae", "--annotations", ann, "--out", tmp_path / "p.json",
                  "--checkpoint", vae_run)
    assert_user_error(rc, err, str(vae_run / "threshold.json"), text)


def test_complete_samples_is_reproducible_with_seed(tmp_path, capsys, vae_run):
    ann = fx.write_kins2020(tmp_path / "k.json")
    files = {}
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        files[name] = tmp_path / f"{name}.json"
        rc, err = run(capsys, "complete", "--method", "amodal-vae", "--annotations", ann, "--out", files[name],
                      "--checkpoint", vae_run, "--samples", "3", "--seed", seed)
        assert rc == 0, err
    assert files["a"].read_bytes() == files["b"].read_bytes()
    assert files["a"].read_bytes() != files["c"].read_bytes()


def test_checkpoint_of_another_model(tmp_path, capsys, vae_run):
    """PCNet-M's loader (train/pcnet.py, reached through the registry) raises the same error types."""
    ann = fx.write_kins2020(tmp_path / "k.json")
    E.save_checkpoint(tmp_path / "odd.pt", {"model": {"w": torch.zeros(3)}, "extra": {"method": "pcnet-m",
                                                                                        "model": {"width": 4}}})
    for ck, text in ((vae_run / "stage3.pt", "not a PCNet-M checkpoint"), (tmp_path / "odd.pt", "cannot be rebuilt")):
        rc, err = run(capsys, "complete", "--method", "pcnet-m", "--annotations", ann, "--out", tmp_path / "p.json",
                      "--checkpoint", ck)
        assert_user_error(rc, err, str(ck), text)
    assert not (tmp_path / "p.json").exists()


def _record(run_dir: Path, model: str, ann: Path, **settings) -> None:
    """Record in ``run_dir`` that ``amodal train --model MODEL --annotations ANN`` made its run."""
    with folder.hold(run_dir, folder.settings(model, load_annotations(ann), **settings), adopt=True):
        pass


def test_train_resuming_from_a_corrupt_checkpoint(tmp_path, capsys):
    coco = fx.write_coco(tmp_path / "coco.json", n_images=3)
    for model, name in (("amodal-vae", "stage1.pt"), ("pcnet-m", "pcnet.pt")):
        run_dir = tmp_path / model
        run_dir.mkdir()
        (run_dir / name).write_bytes(b"PK\x03\x04 not really a zip")
        _record(run_dir, model, coco, profile="smoke")
        before = snapshot(run_dir)
        rc, err = run(capsys, "train", "--model", model, "--annotations", coco, "--out", run_dir, "--profile", "smoke",
                      "--device", "cpu")
        assert_user_error(rc, err, str(run_dir / name), "corrupt", after_progress=True)
        assert snapshot(run_dir) == before


def test_train_resume_from_a_foreign_checkpoint(tmp_path, capsys):
    coco = fx.write_coco(tmp_path / "coco.json", n_images=3)
    run_dir = tmp_path / "run"
    E.save_checkpoint(run_dir / "pcnet.pt", {"model": {}, "step": 1})
    _record(run_dir, "pcnet-m", coco, profile="smoke")
    rc, err = run(capsys, "train", "--model", "pcnet-m", "--annotations", coco, "--out", run_dir,
                  "--profile", "smoke", "--device", "cpu")
    assert_user_error(rc, err, str(run_dir / "pcnet.pt"), "cannot resume from it", after_progress=True)


def test_train_checks_its_run_folder_before_any_step(tmp_path, capsys, monkeypatch):
    import amodal_lib.registry as R

    def never(*args, **kwargs):
        raise AssertionError("training started")
    monkeypatch.setattr(R, "train", never)       # both models: the command line -> registry.train
    coco = fx.write_coco(tmp_path / "coco.json", n_images=3)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    (tmp_path / "file").write_text("x")
    try:
        for model in ("amodal-vae", "pcnet-m"):
            for out, text in ((ro, "read-only"), (ro / "run", "read-only"), (tmp_path / "file", "not a folder"),
                              (coco, "not a folder")):
                rc, err = run(capsys, "train", "--model", model, "--annotations", coco, "--out", out)
                assert_user_error(rc, err, str(out), text)
    finally:
        ro.chmod(0o755)
    assert (tmp_path / "file").read_text() == "x"


# --------------------------------------------------------------------------- run folders
def _with(argv: list, flag: str, value=None) -> list:
    """``argv`` with ``flag`` set to ``value`` (replaced where it is given, else added)."""
    out = list(argv)
    if flag in out:
        out[out.index(flag) + 1] = value
        return out
    return out + [flag] + ([] if value is None else [value])


def test_resume_refuses_a_folder_made_with_other_settings(tmp_path, capsys, one_thread):
    coco = fx.write_coco(tmp_path / "coco.json", n_images=3)
    other = fx.write_coco(tmp_path / "other.json", n_images=3, seed=1)
    kins = fx.write_kins2020(tmp_path / "k.json", n_images=3)
    run_dir = tmp_path / "run"
    made = ["train", "--model", "amodal-vae", "--annotations", coco, "--out", run_dir, "--profile", "smoke",
            "--steps", "2", "--device", "cpu"]
    rc, err = run(capsys, *made)
    assert rc == 0, err
    assert json.loads((run_dir / "run.json").read_text())["settings"]["seed"] == 0
    # killed after its last stage, before its threshold was written: the same command writes it
    threshold = (run_dir / "threshold.json").read_text()
    (run_dir / "threshold.json").unlink()
    rc, err = run(capsys, *made)
    assert rc == 0 and json.loads((run_dir / "threshold.json").read_text()) == json.loads(threshold), err
    before = snapshot(run_dir)
    for flags, text in ((["--profile", "default", "--seed", "1"], "its run was made with --profile smoke, not default"),
                        (["--seed", "1"], "its run was made with --seed 0, not 1"),
                        (["--annotations", other], "its run was trained on coco.json (hash "),
                        (["--model", "pcnet-m"], "its run is of --model amodal-vae, not pcnet-m"),
                        (["--steps", "3"], "its run was made with --steps 2, not --steps 3"),
                        (["--val-annotations", kins], "its run was made without --val-annotations, not with k.json")):
        argv = made
        for flag, value in zip(flags[::2], flags[1::2]):
            argv = _with(argv, flag, value)
        rc, err = run(capsys, *argv)
        assert_user_error(rc, err, f"{run_dir}: ", text, "use --no-resume to start over in it, or another --out")
        assert snapshot(run_dir) == before, flags
    # --stage k --no-resume starts stage k over on the earlier stages: only when they are of these settings
    rc, err = run(capsys, *_with(made, "--seed", "1"), "--stage", "2", "--no-resume")
    assert_user_error(rc, err, "--seed 0, not 1", "would keep its stage1.pt")
    assert snapshot(run_dir) == before
    written = {n: (run_dir / n).stat().st_mtime_ns for n in ("stage1.pt", "stage2.pt")}
    rc, err = run(capsys, *made, "--stage", "2", "--no-resume")
    assert rc == 0, err
    assert (run_dir / "stage1.pt").stat().st_mtime_ns == written["stage1.pt"]      # kept
    assert (run_dir / "stage2.pt").stat().st_mtime_ns > written["stage2.pt"]       # trained again
    assert not (run_dir / "stage3.pt").exists()       # made from the stage 2 just replaced: gone with it
    # --no-resume: the earlier run's files go (only they), the new settings are recorded, the run is whole
    (run_dir / "notes.txt").write_text("mine")
    (run_dir / "mine.pt").write_bytes(b"mine")
    rc, err = run(capsys, *_with(made, "--seed", "1"), "--no-resume")
    assert rc == 0, err
    assert (run_dir / "notes.txt").read_text() == "mine" and (run_dir / "mine.pt").read_bytes() == b"mine"
    assert json.loads((run_dir / "run.json").read_text())["settings"]["seed"] == 1
    assert {f"stage{s}.pt" for s in (1, 2, 3)} <= {p.name for p in run_dir.iterdir()}
    assert snapshot(run_dir)[str(run_dir / "stage1.pt")] != before[str(run_dir / "stage1.pt")]
    # a run made before runs recorded their settings: refused, since nothing says what made it
    (run_dir / "run.json").unlink()
    before = snapshot(run_dir)
    rc, err = run(capsys, *_with(made, "--seed", "1"))
    assert_user_error(rc, err, f"{run_dir}: it holds a run with no run.json", "--no-resume")
    assert snapshot(run_dir) == before


def test_starting_over_knows_every_familys_files():
    """What ``--no-resume`` removes is named per family: every checkpoint a family writes is there."""
    from amodal_lib.train import amodal_vae, inpaint, pcnet, psp, spade
    names = {amodal_vae.stage_path(".", s).stem for s in amodal_vae.STAGES}
    names |= {inpaint.checkpoint_file(".", kind).stem for kind in inpaint.KINDS}
    names |= {m.CHECKPOINT_NAME for m in (pcnet, psp, spade)}
    assert names == set(folder.CHECKPOINT_NAMES)


def test_a_notebook_adopts_its_unrecorded_run_then_holds_it_to_its_settings(tmp_path):
    """The notebooks' folders are named by profile, data and seed: a run of theirs made before
    records is adopted; from then on it is held to the settings recorded (e.g. a step override)."""
    ann = load_annotations(fx.write_coco(tmp_path / "coco.json", n_images=3))
    run_dir = tmp_path / "amodal-vae-0123456789ab-s0"
    run_dir.mkdir()
    (run_dir / "stage1.pt").write_bytes(b"an earlier run's")
    asked = folder.settings("amodal-vae", ann, profile="smoke", seed=0, overrides={"stage1_steps": None})
    with pytest.raises(OtherRunError, match="no run.json"):
        with folder.hold(run_dir, asked):
            pass
    with folder.hold(run_dir, asked, adopt=True) as rec:
        assert rec["settings"] == asked and json.loads((run_dir / ".amodal.lock").read_text())["pid"] == os.getpid()
    with folder.hold(run_dir, asked, adopt=True) as again:
        assert again["created"] == rec["created"]                 # the same run: its record kept
    with pytest.raises(OtherRunError, match="its run was made with the profile's stage1_steps, not stage1_steps=50"):
        with folder.hold(run_dir, folder.settings("amodal-vae", ann, profile="smoke", overrides={"stage1_steps": 50}),
                         adopt=True):
            pass
    assert (run_dir / "stage1.pt").read_bytes() == b"an earlier run's" and not (run_dir / ".amodal.lock").exists()


HOLDER = ("import sys, time\nfrom amodal_lib.io import folder_lock\n"
          "with folder_lock(sys.argv[1], sys.argv[2], 'test holder'):\n    print('held', flush=True)\n    time.sleep(300)\n")


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **extra}


def test_one_process_per_folder_and_a_killed_ones_lock_is_taken_over(tmp_path, capsys, one_thread):
    coco = fx.write_coco(tmp_path / "coco.json", n_images=3)
    run_dir, ds = tmp_path / "run", tmp_path / "ds"
    run_dir.mkdir()
    commands = {run_dir: ["train", "--model", "pcnet-m", "--annotations", coco, "--out", run_dir, "--profile", "smoke",
                          "--steps", "2", "--device", "cpu"],
                ds: ["synth", "--out", ds, "--images", "2"]}
    locks = {run_dir: run_dir / ".amodal.lock", ds: tmp_path / ".ds.amodal.lock"}
    holders = {}
    try:
        for out, lock in locks.items():    # another process writing each folder
            holders[out] = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock), str(out)], stdout=subprocess.PIPE,
                                            text=True, env=_env(), cwd=tmp_path)
            assert holders[out].stdout.readline().strip() == "held"
        for out, argv in commands.items():
            rc, err = run(capsys, *argv)
            assert_user_error(rc, err, f"{out}: in use by process {holders[out].pid} on {socket.gethostname()} "
                                       "(test holder) since ", " UTC: wait for it to end, or use another --out")
        assert list(run_dir.iterdir()) == [run_dir / ".amodal.lock"] and not ds.exists()   # nothing written
    finally:
        for h in holders.values():
            h.kill()                       # kill -9: its lock files stay behind
            h.wait()
    for out, argv in commands.items():
        assert locks[out].is_file()
        rc, err = run(capsys, *argv)
        assert rc == 0, err
        assert f"{out}: taking over the lock left by process {holders[out].pid} on {socket.gethostname()} " \
               "(test holder) since " in err and "which is gone" in err
        assert not locks[out].exists()     # released when the command ends
    assert (run_dir / "pcnet.pt").is_file() and (ds / "params.json").is_file()


def _weights(run_dir: Path) -> dict:
    return {f"{p.name}:{k}": v for p in sorted(run_dir.glob("stage*.pt")) for k, v in E.load_checkpoint(p)["model"].items()}


def test_kill_9_at_a_random_point_then_the_same_command_gives_the_same_weights(tmp_path, capsys, one_thread):
    """``amodal train --profile smoke`` killed (SIGKILL) at a random moment of its work (from when it
    holds its folder, its checks and imports done), then run again: the weights of every stage and
    the threshold are those of a run never killed."""
    kins = fx.write_kins2020(tmp_path / "k.json", n_images=4)
    argv = ["train", "--model", "amodal-vae", "--annotations", kins, "--profile", "smoke", "--steps", "6",
            "--device", "cpu"]
    registry.family("amodal-vae")      # its imports, done before the killed process holds its folder too
    t0 = time.perf_counter()
    rc, err = run(capsys, *argv, "--out", tmp_path / "ref")
    work = time.perf_counter() - t0
    assert rc == 0, err
    killed, lock = tmp_path / "killed", tmp_path / "killed" / ".amodal.lock"
    proc = subprocess.Popen([sys.executable, "-m", "amodal_lib", *map(str, argv), "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env=_env(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1"))
    delay = random.Random().uniform(0, work)   # its own generator: training seeds the global one
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if json.loads(lock.read_text() or "{}").get("pid") == proc.pid:
                    break
            except (FileNotFoundError, ValueError):
                pass
            time.sleep(0.01)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    said = f"(killed {delay:.2f} s into its work of about {work:.1f} s; exit {proc.returncode})"
    assert proc.returncode in (0, -signal.SIGKILL), f"{said}\n{proc.stderr.read()}"
    held = lock.is_file()
    rc, err = run(capsys, *argv, "--out", killed)
    assert rc == 0, f"{said}\n{err}"
    if held:
        assert f"taking over the lock left by process {proc.pid}" in err, said
    want, got = _weights(tmp_path / "ref"), _weights(killed)
    assert list(got) == list(want) and all(torch.equal(want[k], got[k]) for k in want), said
    assert json.loads((killed / "threshold.json").read_text()) == \
        json.loads((tmp_path / "ref" / "threshold.json").read_text()), said


# --------------------------------------------------------------------------- arguments
@pytest.mark.parametrize("extra, text", [
    (["--threshold", "nan"], "--threshold must lie in (0, 1]"), (["--threshold", "2"], "--threshold"),
    (["--threshold", "-1"], "--threshold"), (["--threshold", "0"], "--threshold"),
    (["--samples", "-3"], "--samples must lie in 0.."), (["--samples", "100000"], "--samples"),
    (["--seed", "-1"], "--seed must be >= 0"), (["--device", "tpu"], "device"),
])
def test_argument_values_out_of_range(tmp_path, capsys, vae_run, extra, text):
    ann = fx.write_kins2020(tmp_path / "k.json")
    rc, err = run(capsys, "complete", "--method", "amodal-vae", "--annotations", ann, "--out", tmp_path / "p.json",
                  "--checkpoint", vae_run, *extra)
    assert_user_error(rc, err, text)
    assert not (tmp_path / "p.json").exists()


def test_images_folder_is_checked_by_train_and_not_taken_by_complete(tmp_path, capsys):
    """``train --images`` is checked (one line) before anything is written; ``complete`` has no
    ``--images`` (no method reads pixels): argparse refuses it with exit code 2."""
    ann = fx.write_kins2020(tmp_path / "k.json")
    for model in ("amodal-vae", "pcnet-m"):
        rc, err = run(capsys, "train", "--model", model, "--annotations", ann, "--out", tmp_path / "r",
                      "--images", "/no/such/folder")
        assert_user_error(rc, err, "--images /no/such/folder", "no such image folder")
    assert not (tmp_path / "r").exists()
    rc, err = run(capsys, "complete", "--method", "visible", "--annotations", ann, "--out", tmp_path / "p.json",
                  "--images", tmp_path)
    assert rc == 2 and "unrecognized arguments: --images" in err and "Traceback" not in err
    assert not (tmp_path / "p.json").exists()


def test_flags_that_would_be_ignored_are_refused(tmp_path, capsys):
    ann = fx.write_kins2020(tmp_path / "k.json")
    coco = fx.write_coco(tmp_path / "coco.json")
    cases = [
        (["complete", "--method", "amodal-vae", "--annotations", ann, "--out", tmp_path / "p.json"], "needs --checkpoint"),
        (["complete", "--method", "visible", "--annotations", ann, "--out", tmp_path / "p.json", "--samples", "2"],
         "--samples: does not apply"),
        (["complete", "--method", "convex-hull", "--annotations", ann, "--out", tmp_path / "p.json",
          "--threshold", "0.3"], "--threshold: does not apply"),
        (["complete", "--method", "pcnet-m", "--annotations", ann, "--out", tmp_path / "p.json",
          "--checkpoint", tmp_path, "--samples", "2"], "--samples applies to --model amodal-vae only"),
        (["complete", "--method", "pcnet-m", "--annotations", coco, "--out", tmp_path / "p.json",
          "--checkpoint", tmp_path, "--box", "amodal-gt"], "has none"),
        (["complete", "--method", "pcnet-m", "--annotations", ann, "--out", tmp_path / "p.json",
          "--checkpoint", tmp_path, "--frame", "transformer"], "--frame applies to --model amodal-vae only"),
        (["train", "--model", "amodal-vae", "--annotations", coco, "--out", tmp_path / "r", "--steps", "0"],
         "--steps must be >= 1"),
        (["train", "--model", "pcnet-m", "--annotations", coco, "--out", tmp_path / "r", "--val-annotations", coco],
         "has no amodal masks"),
        (["train", "--model", "pcnet-m", "--annotations", coco, "--out", tmp_path / "r", "--steps", "0"],
         "--steps must be >= 1"),
        (["synth", "--out", tmp_path / "s", "--images", "0"], "--num-images must be >= 1"),
    ]
    for argv, text in cases:
        rc, err = run(capsys, *argv)
        assert_user_error(rc, err, text)
    assert not (tmp_path / "r").exists() and not (tmp_path / "p.json").exists()


def test_missing_checkpoint_exits_2(tmp_path, capsys):
    ann = fx.write_kins2020(tmp_path / "k.json")
    for method in ("amodal-vae", "pcnet-m"):
        rc, err = run(capsys, "complete", "--method", method, "--annotations", ann, "--out", tmp_path / "p.json",
                      "--checkpoint", tmp_path / "nowhere")
        assert_user_error(rc, err, "nowhere")


def test_debug_shows_the_traceback_and_bugs_keep_theirs(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    argv = ["complete", "--method", "visible", "--annotations", bad, "--out", tmp_path / "p.json"]
    rc, err = run(capsys, "--debug", *argv)
    assert rc == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("amodal complete: error:")
    rc, err = run(capsys, *argv, "--debug")  # after the command too
    assert rc == 2 and "Traceback" in err

    def bug(ns):
        return 1 / 0
    monkeypatch.setitem(cli.COMMANDS, "complete", bug)
    rc, err = run(capsys, *argv)
    assert rc == 1 and "Traceback" in err and "ZeroDivisionError" in err and "bug" in err

    def interrupted(ns):
        raise KeyboardInterrupt
    monkeypatch.setitem(cli.COMMANDS, "complete", interrupted)
    assert run(capsys, *argv)[0] == 130


def test_as_a_real_process(tmp_path):
    """The console entry point itself: stderr and exit codes as a shell sees them (cases that
    need no torch, which takes seconds to import; checkpoints are checked in-process above)."""
    ann = fx.write_kins2020(tmp_path / "k.json")
    (tmp_path / "nan").mkdir()
    nan = _kins(tmp_path / "nan", _set(A0_POLY + (3,), NAN))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for argv, text in ((["complete", "--method", "amodal-vae", "--annotations", ann, "--out", tmp_path / "p.json"],
                        "needs --checkpoint"),
                       (["complete", "--method", "visible", "--annotations", nan, "--out", tmp_path / "p.json"],
                        "not a finite number"),
                       (["complete", "--method", "visible", "--annotations", ann, "--out", ann], "never overwrites")):
        r = subprocess.run([sys.executable, "-m", "amodal_lib", *map(str, argv)], capture_output=True, text=True,
                           env=env, cwd=tmp_path, timeout=300)
        assert_user_error(r.returncode, r.stderr, text)
    assert not (tmp_path / "p.json").exists()


# --------------------------------------------------------------------------- amodal synth
def _tree(folder: Path) -> dict:
    return snapshot(folder)


def test_interrupted_synth_leaves_the_old_data_set(tmp_path, capsys, monkeypatch):
    ds = tmp_path / "ds"
    assert run(capsys, "synth", "--out", ds, "--images", "3", "--seed", "1")[0] == 0
    before = _tree(ds)
    real = synth._work

    def interrupted(args):
        real(args)               # some images of the new set are written, then Ctrl-C
        raise KeyboardInterrupt
    monkeypatch.setattr(synth, "_work", interrupted)   # 2 images are one job, run in this process
    rc, err = run(capsys, "synth", "--out", ds, "--images", "2", "--seed", "2")
    assert rc == 130
    assert _tree(ds) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]   # no temporary folder left
    monkeypatch.setattr(synth, "_work", real)
    assert run(capsys, "synth", "--out", ds, "--images", "2", "--seed", "2")[0] == 0   # replaced whole
    assert json.loads((ds / "params.json").read_text())["images"] == 2
    assert len(list((ds / "images").rglob("*.png"))) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_synth_refuses_a_folder_that_is_not_a_data_set(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    rc, err = run(capsys, "synth", "--out", mine, "--images", "2")
    assert_user_error(rc, err, str(mine), "'notes.txt'")
    rc, err = run(capsys, "synth", "--out", mine / "notes.txt", "--images", "2")
    assert_user_error(rc, err, "not a folder")
    assert (mine / "notes.txt").read_text() == "my notes" and len(list(mine.iterdir())) == 1


# --------------------------------------------------------------------------- fuzzing the readers
WEIRD = st.sampled_from([NAN, INF, -INF, 1e9, -1e9, 1e300, 10 ** 30, -1, 0, 0.5, 3, "", "x", None, True, [], {},
                         [1], [[]], [NAN], [[0, 0, 1e9, 0, 5, 5]], {"size": [1, 1], "counts": "0"},
                         {"size": [NAN, 2], "counts": []}, {"counts": 5, "size": "ab"}, "\u00e9", [[0, 0]] * 3])


def _nodes(doc, path=()):
    """Every (path, value) in a JSON document, the root excluded."""
    if isinstance(doc, dict):
        items = doc.items()
    elif isinstance(doc, list):
        items = enumerate(doc)
    else:
        return
    for k, v in items:
        yield path + (k,), v
        yield from _nodes(v, path + (k,))


def _mutate(doc, choices) -> object:
    doc = copy.deepcopy(doc)
    for pick, op, value in choices:
        # every kind of field (its path with list indices left out) is as likely as another:
        # 'category_id' as much as one of the hundreds of polygon coordinates
        kinds: dict = {}
        for path, v in _nodes(doc):
            kinds.setdefault(tuple(k if isinstance(k, str) else "*" for k in path), []).append((path, v))
        if not kinds:
            break
        members = list(kinds.values())[pick % len(kinds)]
        path, old = members[(pick // len(kinds)) % len(members)]
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        if op == "replace":
            parent[key] = value
        elif op == "delete":
            del parent[key]
        elif op == "duplicate" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(old))
        elif op == "scale" and isinstance(old, (int, float)) and not isinstance(old, bool):
            parent[key] = old * 1e7
    return doc


MUTATIONS = st.lists(st.tuples(st.integers(0, 10 ** 6), st.sampled_from(["replace", "delete", "duplicate", "scale"]),
                               WEIRD), min_size=1, max_size=3)
FUZZ = settings(max_examples=40, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _check_fuzzed(worker, tmp_path, argv, inputs, earlier) -> None:
    earlier.write_text("earlier output")
    before = snapshot(*inputs, earlier)
    rc, err = worker.run(*argv)
    assert rc in (0, 2), f"exit code {rc} for {argv}:\n{err[-3000:]}"
    if rc == 2:
        line = assert_user_error(rc, err)
        assert any(str(p) in line for p in inputs), line
        assert snapshot(*inputs, earlier) == before
    else:
        assert snapshot(*inputs) == {k: v for k, v in before.items() if k != str(earlier)}


@pytest.mark.parametrize("schema", ["kins2020", "cocoa", "coco"])
def test_fuzz_annotation_files(worker, tmp_path, schema):
    writer = {"kins2020": fx.write_kins2020, "cocoa": fx.write_cocoa,
              "coco": lambda p: fx.write_coco(p, polygons=True)}[schema]
    valid = json.loads(writer(tmp_path / "valid.json").read_text())
    ann, out = tmp_path / "fuzzed.json", tmp_path / "pred.json"

    @FUZZ
    @given(MUTATIONS)
    def check(choices):
        ann.write_text(json.dumps(_mutate(valid, choices)))
        _check_fuzzed(worker, tmp_path, ["complete", "--method", "visible", "--annotations", ann, "--out", out],
                      [ann], out)
    check()


def test_fuzz_prediction_files(worker, tmp_path, predictions):
    ann, pred = predictions
    valid = json.loads(pred.read_text())
    fuzzed, out = tmp_path / "fuzzed_pred.json", tmp_path / "metrics.json"

    @FUZZ
    @given(MUTATIONS)
    def check(choices):
        fuzzed.write_text(json.dumps(_mutate(valid, choices)))
        _check_fuzzed(worker, tmp_path, ["evaluate", "--annotations", ann, "--predictions", fuzzed, "--out", out,
                                         "--allow-missing"], [ann, fuzzed], out)
    check()


def test_fuzz_bytes(worker, tmp_path):
    """Truncated files and flipped bytes: invalid JSON or a bad record, never anything else."""
    raw = fx.write_kins2020(tmp_path / "valid.json").read_bytes()
    ann, out = tmp_path / "fuzzed.json", tmp_path / "pred.json"

    @FUZZ
    @given(st.integers(0, len(raw)), st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)),
                                               max_size=4))
    def check(cut, flips):
        data = bytearray(raw[:cut] if cut % 2 else raw)
        for pos, byte in flips:
            if pos < len(data):
                data[pos] = byte
        ann.write_bytes(bytes(data))
        _check_fuzzed(worker, tmp_path, ["complete", "--method", "visible", "--annotations", ann, "--out", out],
                      [ann], out)
    check()
