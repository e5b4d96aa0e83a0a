"""Amodal-VAE's three training stages: KL schedule, simulated occlusions, no amodal label, run dirs, CLI."""
import argparse
import math

import pytest
import torch

from _fixtures_vae import TINY, tiny_dataset, without_amodal
from amodal_lib.data import load_annotations
from amodal_lib.data import masks as M
from amodal_lib.train import amodal_vae as T
from amodal_lib.train import amodal_vae_stages as ST
from amodal_lib.train import occlusions as O


def test_kl_schedule_is_eq_1():
    f = lambda t: ST.kl_weight(t, 0.5, 0.01, 0.9995, 2000)  # the paper's constants
    assert f(0) == pytest.approx(0.01) and f(2000) == pytest.approx(0.01)
    assert f(2001) == pytest.approx(0.5 - 0.49 * 0.9995)
    assert f(2000 + 1386) == pytest.approx(0.5 - 0.49 * 0.9995 ** 1386)
    assert f(10 ** 6) == pytest.approx(0.5)
    vals = [f(t) for t in range(0, 20000, 500)]
    assert all(a <= b for a, b in zip(vals, vals[1:]))


def test_kl_terms():
    mu, logvar = torch.zeros(2, 4), torch.zeros(2, 4)
    assert torch.allclose(ST.kl_to_prior(mu, logvar), torch.zeros(2))
    assert torch.allclose(ST.kl_between(mu + 1, logvar, mu + 1, logvar), torch.zeros(2), atol=1e-6)
    assert ST.kl_to_prior(mu + 1, logvar)[0] == pytest.approx(2.0)


def test_simulated_occlusions():
    torch.manual_seed(0)
    n = 64
    full = torch.zeros(n, 56, 56)
    full[:, 8:48, 4:52] = 1.0  # a box-shaped object
    wh = torch.full((n, 2), 40.0)
    occ = torch.ones(n, 56, 56)
    sim = O.simulate_occlusions(full, wh, occ, wh.clone(), max_occluded=0.9, unoccluded_prob=0.25)
    assert (sim["partial"] <= full + 1e-6).all()
    assert (sim["occluded"] <= 0.9 + 1e-4).all() and (sim["occluded"] >= -1e-4).all()
    assert (sim["occluded"] > 0.05).float().mean() > 0.4  # many occluded ...
    whole = sim["occluded"] < 1e-4  # ... and the whole ones have the identity box target
    assert whole.any()
    vis = sim["vis_box"][whole]
    assert torch.allclose(vis, torch.tensor([[4 / 56, 8 / 56, 52 / 56, 48 / 56]]).expand_as(vis), atol=1e-6)
    # the full box relative to the visible box maps the visible box back to [0, 1]^2
    vb, fr = sim["vis_box"], sim["full_rel"]
    w, h = vb[:, 2] - vb[:, 0], vb[:, 3] - vb[:, 1]
    assert torch.allclose(vb[:, 0] + fr[:, 0] * w, torch.zeros(n), atol=1e-5)
    assert torch.allclose(vb[:, 1] + fr[:, 3] * h, torch.ones(n), atol=1e-5)


def test_stage2_weighs_the_hidden_pixels_of_its_reconstruction():
    full = torch.zeros(2, 56, 56)
    full[:, 8:48, 4:52] = 1.0
    partial = full.clone()
    partial[1, :, 28:] = 0                   # the second one's right half hidden
    y = torch.nn.functional.avg_pool2d(full.unsqueeze(1), 2)[:, 0]
    hidden = ST.hidden_share(y, partial)
    assert hidden[0].sum().item() == 0 and hidden[1].sum().item() == pytest.approx(20 * 12)   # 28x28 pixels
    assert hidden[1][:, :14].sum().item() == 0      # nothing hidden on the visible side
    logits = torch.zeros(2, 28, 28)          # p = 0.5 everywhere: every pixel costs log 2
    plain, weighted = ST.bce_sum(logits, y), ST.bce_sum(logits, y, 1 + 3 * hidden)
    assert weighted[0].item() == pytest.approx(plain[0].item())                    # nothing hidden: the plain loss
    assert weighted[1].item() == pytest.approx(plain[1].item() + 3 * 240 * math.log(2), rel=1e-5)
    # stage 2 uses it when asked: the same batch and weights cost more with the hidden pixels weighted
    data = ST.prepare(tiny_dataset()["train"], (1, 2), ST.VAEConfig(**TINY))
    from amodal_lib.models.amodal_vae import GEOMETRY_FEATURES, AmodalVAE
    batch = {k: data[k][:16] for k in ("full", "full_wh", "full_box", "full_hw")}
    bce = {}
    for w in (0.0, 3.0):
        torch.manual_seed(0)
        vae = AmodalVAE(8, 16, 32, GEOMETRY_FEATURES)
        cfg = ST.VAEConfig(**{**TINY, "hidden_weight": w, "unoccluded_prob": 0.0})
        torch.manual_seed(1)
        bce[w] = ST.Stage2(vae, cfg, data["occ"], data["occ_wh"])(batch, 0)["bce"].item()
    assert bce[3.0] > bce[0.0]


def _stage_weights(run_dir, stage):
    return torch.load(run_dir / f"stage{stage}.pt", weights_only=True)["model"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """All three stages, tiny, on the full file and on a copy without amodal fields."""
    paths = tiny_dataset()
    root = tmp_path_factory.mktemp("vae")
    stripped = without_amodal(paths["train"], root / "train_modal_only.json")
    runs = {}
    for name, ann in (("full", paths["train"]), ("modal", stripped)):
        runs[name] = root / name
        LOGS[name] = T.train_amodal_vae(ann, runs[name], profile="smoke", seed=3, device="cpu", progress=False,
                                        val_annotations=paths["val"], **TINY)["log"]
    return runs, stripped


LOGS: dict = {}   # the training log of each of trained's runs


def test_no_amodal_label_is_read(trained):
    runs, stripped = trained
    ann = load_annotations(stripped)
    assert ann.schema == "kins2020" and not ann.has_amodal  # the file really has no amodal label
    for s in (1, 2, 3):
        a, b = _stage_weights(runs["full"], s), _stage_weights(runs["modal"], s)
        assert a.keys() == b.keys()
        for k in a:  # amodal labels present or absent: the very same training
            assert torch.equal(a[k], b[k]), (s, k)


def test_checkpoints_load_weights_only_and_hold_history(trained):
    runs, _ = trained
    for s in (1, 2, 3):
        ck = torch.load(runs["full"] / f"stage{s}.pt", weights_only=True)
        assert ck["done"] and ck["step"] == TINY[f"stage{s}_steps"] and ck["extra"]["stage"] == s
        assert ck["config"]["width"] == TINY["width"]
        vals = [h for h in ck["history"] if h["split"] == "val"]
        assert vals and all(math.isfinite(v) for h in vals for k, v in h.items() if k.startswith("val_"))
    hist = ck["history"]
    assert any("val_labelled_A_full" in h for h in hist)  # completion mIoU on the validation file (stage 3)
    assert ck["selected"]["metric"] == "val_score"  # stage 3 ended with its best validation checkpoint


def test_rerun_skips_finished_stages_and_load_model(trained, capsys):
    runs, _ = trained
    before = _stage_weights(runs["full"], 3)
    res = T.train_amodal_vae(tiny_dataset()["train"], runs["full"], profile="smoke", device="cpu", **TINY)
    assert res["seconds"] == {} and "skipped" in capsys.readouterr().out
    m = T.load_model(runs["full"], "cpu")
    assert m.trained_stage == 3 and not m.training
    assert all(torch.equal(v, before[k]) for k, v in m.state_dict().items())
    assert T.load_model(runs["full"] / "stage1.pt", "cpu").trained_stage == 1


def test_missing_checkpoints_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="stage1.pt"):
        T.load_model(tmp_path, "cpu")
    with pytest.raises(FileNotFoundError, match=r"stage1\.pt: stage 2 starts from stage 1's .* it is missing"):
        T.train_amodal_vae(tiny_dataset()["train"], tmp_path, profile="smoke", stage=2, device="cpu",
                           progress=False, **TINY)


def test_complete_through_the_registry(trained):
    from amodal_lib import registry
    runs, _ = trained
    ann = load_annotations(tiny_dataset()["test"])
    model = registry.load_model("amodal-vae", runs["full"], "cpu")
    for box, samples, frame in (("predicted", 0, "fit"), ("predicted", 0, "transformer"), ("amodal-gt", 3, "fit")):
        preds = registry.complete("amodal-vae", ann, model, box=box, samples=samples, frame=frame, threshold=0.4)
        assert set(preds) == {i.id for i in ann.instances}
        assert all(list(r["size"]) == [i.height, i.width] for i, r in zip(ann.instances, preds.values()))
        assert M.area(next(iter(preds.values()))) > 0


def test_stage3_keeps_stage2_when_it_does_not_help(tmp_path):
    """A validation on which every stage-3 step scores worse than stage 2's weights: stage 3 ends
    with stage 2's weights, and its log line says so."""
    from amodal_lib.train.validation import validation_split
    paths = tiny_dataset()
    _, val = validation_split(paths["train"], val_annotations=paths["val"])
    calls = []

    class Souring(type(val)):
        def score(self, complete):
            out = super().score(complete)
            calls.append(out["score"])
            return {**out, "score": 100.0 - len(calls)}  # every evaluation worse than the one before
    T.train_amodal_vae(paths["train"], tmp_path, profile="smoke", device="cpu", progress=False, upto=2, **TINY)
    sour = Souring(**{f: getattr(val, f) for f in ("sets", "kind", "description", "held_images")})
    cfg = T.VAEConfig.from_profile("smoke", **TINY)
    data = T.prepare(paths["train"], (3,), cfg)
    T.train_stage(3, data, tmp_path, cfg, device="cpu", validation=sour, progress=False)
    ck3, ck2 = (torch.load(tmp_path / f"stage{s}.pt", weights_only=True) for s in (3, 2))
    assert len(calls) >= 3 and ck3["selected"]["step"] == 0 and ck3["step"] == TINY["stage3_steps"]
    for k, v in ck3["model"].items():
        assert torch.equal(v, ck2["model"][k]), k
    assert "keeps stage 2's weights" in T.stage_summary(3, ck3["history"], sour)


def test_cli_train_one_stage(tmp_path, monkeypatch):
    from amodal_lib import cli, profiles
    monkeypatch.setitem(profiles._PROFILES["smoke"], "vae", {**profiles._PROFILES["smoke"]["vae"], **TINY})
    assert cli.main(["train", "--model", "amodal-vae", "--annotations", tiny_dataset()["train"], "--out",
                     str(tmp_path), "--profile", "smoke", "--device", "cpu", "--stage", "1"]) == 0
    assert (tmp_path / "stage1.pt").is_file() and not (tmp_path / "stage2.pt").exists()


DDP_JOB = r"""
import sys, torch
sys.path.insert(0, sys.argv[3])
from _fixtures_vae import TINY
from amodal_lib.train import amodal_vae as T
from amodal_lib.train.engine import setup_distributed
dist = setup_distributed("cpu")
cfg = T.VAEConfig(**dict(TINY, stage1_steps=4, stage2_steps=4, eval_every=0))
data = T.prepare(sys.argv[1], (1, 2), cfg)
for stage in (1, 2):
    vae, _ = T.train_stage(stage, data, sys.argv[2], cfg, seed=0, dist=dist, progress=False)
params = {k: p.detach().clone() for k, p in vae.named_parameters()}
torch.save(params, f"{sys.argv[2]}/params{dist.rank}.pt")
"""


def test_ddp_two_processes_train_stages_1_and_2(tmp_path):
    """torchrun, 2 CPU processes (gloo): frozen parts, the occluder pool and checkpoints work under DDP."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path
    job = tmp_path / "job.py"
    job.write_text(DDP_JOB)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(root))
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--master_addr", "127.0.0.1", "--master_port", str(port), str(job),
                        tiny_dataset()["train"], str(tmp_path / "run"), str(Path(__file__).parent)],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    ck = torch.load(tmp_path / "run" / "stage2.pt", weights_only=True)
    assert ck["world_size"] == 2 and ck["done"] and len(ck["rng"]) == 2
    a, b = (torch.load(tmp_path / "run" / f"params{r}.pt") for r in (0, 1))
    assert all(torch.equal(a[k], b[k]) for k in a)  # both ranks hold the same weights
    assert all(torch.equal(a[k], ck["model"][k]) for k in a)


def as_plain_coco(src, dst):
    """A KINS-2020 file rewritten as plain COCO instances: the visible mask is the segmentation."""
    import json
    from pathlib import Path
    data = json.loads(Path(src).read_text())
    anns = [{"id": a["id"], "image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["i_segm"],
             "bbox": a["i_bbox"], "area": a.get("i_area", 0), "iscrowd": 0} for a in data["annotations"]]
    Path(dst).write_text(json.dumps({"images": data["images"], "annotations": anns,
                                     "categories": data["categories"]}))
    return dst


def test_cli_trains_all_stages_on_a_plain_coco_file(tmp_path, monkeypatch, capsys):
    """A user with only instance masks: `amodal train` (all stages), `complete`, `evaluate`."""
    import json
    from amodal_lib import cli, profiles
    monkeypatch.setitem(profiles._PROFILES["smoke"], "vae", {**profiles._PROFILES["smoke"]["vae"], **TINY})
    paths = tiny_dataset()
    coco = as_plain_coco(paths["train"], tmp_path / "instances_train.json")
    assert load_annotations(coco).schema == "coco" and not load_annotations(coco).has_amodal
    run, pred = tmp_path / "run", tmp_path / "pred.json"
    assert cli.main(["train", "--model", "amodal-vae", "--annotations", str(coco), "--out", str(run),
                     "--profile", "smoke", "--device", "cpu"]) == 0
    assert all(T.stage_done(run, s) for s in T.STAGES)
    assert "validation: " in capsys.readouterr().out  # where the run was validated, said in its log
    stored = json.loads((run / "threshold.json").read_text())  # searched on pasted occlusions
    assert 0 < stored["threshold"] <= 1 and set(stored["scores"]) == {"pasted", "pasted_no_occluders"}
    assert (run / "validation_pasted.json").is_file()
    assert cli.main(["complete", "--method", "amodal-vae", "--annotations", paths["test"], "--out", str(pred),
                     "--checkpoint", str(run)]) == 0
    assert f"threshold {stored['threshold']:g} (searched on validation" in capsys.readouterr().err
    assert len(json.loads(pred.read_text())) == len(load_annotations(paths["test"]))
    assert cli.main(["evaluate", "--annotations", paths["test"], "--predictions", str(pred),
                     "--out", str(tmp_path / "m.json")]) == 0
    scores = json.loads((tmp_path / "m.json").read_text())
    assert 0 < scores["overall"]["A"]["full"] <= 100


def test_the_transformer_frame_is_selected_for_itself(trained, tmp_path, capsys):
    """The paper's transformer frame gets its own checkpoint (the evaluation of stages 2-3 its own
    validation score ranks first) and its own threshold, in ``<run>/transformer/``; ``amodal complete
    --frame transformer`` reads them there, the fitted frame the run's own."""
    from amodal_lib import registry
    from amodal_lib.cli import main
    from amodal_lib.thresholds import read_threshold
    runs, _ = trained
    run, var = runs["full"], runs["full"] / "transformer"
    ck = torch.load(next(var.glob("stage*.pt")), weights_only=True)
    sel = ck["extra"]["selected"]
    assert ck["extra"]["variant"] == "transformer" and sel["stage"] in (2, 3)
    # the variant's weights are those of the best transformer-frame evaluation of its stage ...
    hist = torch.load(run / f"stage{sel['stage']}.pt", weights_only=True)["history"]
    scores = {h["step"]: h["variant_transformer_score"] for h in hist if "variant_transformer_score" in h}
    assert sel["value"] == pytest.approx(max(scores.values())) and scores[sel["step"]] == pytest.approx(sel["value"])
    # ... and never worse than the other stage's best
    for s in (2, 3):
        other = torch.load(run / f"stage{s}.pt", weights_only=True)["kept"]["variant_transformer_score"]
        assert other["value"] <= sel["value"] + 1e-9
    assert read_threshold(var)["frame"] == "transformer" and read_threshold(run)["frame"] == "fit"
    assert registry.variant_checkpoint("amodal-vae", run, "transformer") == var
    assert registry.variant_checkpoint("amodal-vae", run, "fit") == run
    test = tiny_dataset()["test"]
    out = tmp_path / "t.json"
    assert main(["complete", "--model", "amodal-vae", "--annotations", str(test), "--checkpoint", str(run),
                 "--frame", "transformer", "--out", str(out), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert f"transformer frame: the checkpoint and threshold its run selected for it on validation ({var})" in err
    assert f"threshold {read_threshold(var)['threshold']:g} " in err


def test_the_run_chooses_the_mirror_average_on_validation(trained):
    """The fitted frame's threshold search is made without and with the mirror average; the run keeps
    the better (threshold.json's ``mirror``), which the loaded model carries; the transformer frame has none."""
    import pandas as pd
    from amodal_lib.thresholds import read_threshold
    run = trained[0]["full"]
    stored, var = read_threshold(run), read_threshold(run / "transformer")
    choice = stored["mirror_choice"]
    assert set(choice) == {"with", "without"} and stored["mirror"] is (choice["with"] > choice["without"])
    assert T.load_model(run, "cpu").mirror is stored["mirror"]
    assert var["mirror"] is False and set(var["mirror_choice"]) == {"without"}
    assert T.load_model(run / "transformer", "cpu").mirror is False
    sweep = pd.read_csv(run / "threshold_sweep.csv")   # the kept search's sweep, its criterion as recorded
    clean = sweep[~sweep.noisy.astype(bool)]
    kept = choice["with" if stored["mirror"] else "without"]
    assert clean[clean.threshold == stored["threshold"]].A_full.mean() == pytest.approx(kept, abs=1e-3)


def test_the_run_chooses_how_a_segmenters_masks_are_taken_on_validation(trained):
    """The noisy validation sets are swept with each way of taking a segmenter's masks (soft evidence,
    as truth, smoothed first); threshold.json keeps the best, and the log says it."""
    import pandas as pd
    from amodal_lib.thresholds import EVIDENCE, noisy_threshold, read_threshold
    run = trained[0]["full"]
    stored = read_threshold(run)["noisy"]
    sweep = pd.read_csv(run / "threshold_sweep.csv")
    assert set(sweep[sweep.noisy.astype(bool)].evidence) == set(EVIDENCE)
    assert noisy_threshold(sweep) == (stored["threshold"], stored["evidence"])
    how = {"soft": "as soft evidence", "hard": "as truth", "smooth": "smoothed first"}[stored["evidence"]]
    assert any(f"a segmenter's masks {how}, threshold {stored['threshold']:g}" in line for line in LOGS["full"])
