"""PCNet-M (Deocclusion) baseline: model, crops, erasers, label-free training, resume, completion, CLI."""
import json
import math

import pytest
import torch

import _fixtures as fx
from amodal_lib import cli, registry
from amodal_lib.data import load_annotations
from amodal_lib.data import masks as M
from amodal_lib.models.pcnet import PCNetM
from amodal_lib.models.unet import UNet
from amodal_lib.predict.pcnet import complete_instances, input_crops, square_boxes
from amodal_lib.train import pcnet as pcnet_training
from amodal_lib.train.pcnet import load_model, make_inputs, place_erasers, train_pcnet, training_tensors

TINY = dict(width=4, crop=32, batch_size=8, checkpoint_every=5, log_every=1)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def kins(tmp_path):
    return load_annotations(fx.write_kins2020(tmp_path / "k.json", n_images=4))


def test_unet_shapes_and_channels():
    assert UNet(2, 2, 32).channels == (32, 64, 128, 256, 256)
    m = PCNetM(width=4, crop=32, max_category=8).eval()
    with torch.no_grad():
        assert m(torch.rand(3, 2, 32, 32)).shape == (3, 2, 32, 32)
        assert m(torch.rand(1, 2, 64, 64)).shape == (1, 2, 64, 64)
    with pytest.raises(ValueError, match="multiple of 16"):
        PCNetM(crop=40)


def test_square_crop_side_formula(kins):
    b = square_boxes(kins.instances)
    for inst, box in zip(kins.instances, b):
        x, y, w, h = inst.visible_box
        side = max(math.sqrt(3 * w * h), 1.1 * w, 1.1 * h)
        assert box[2] - box[0] == pytest.approx(side, rel=1e-5)
        assert box[3] - box[1] == pytest.approx(side, rel=1e-5)
        assert ((box[0] + box[2]) / 2).item() == pytest.approx(x + w / 2, abs=1e-3)
        assert ((box[1] + box[3]) / 2).item() == pytest.approx(y + h / 2, abs=1e-3)


def test_eraser_coverage_and_front_behind_inputs(kins):
    data = training_tensors(kins.modal_view(), 32)
    targets = data["mask"].float().repeat(20, 1, 1)
    torch.manual_seed(0)
    eraser, cov, ok = place_erasers(targets, data["mask"], cover=(0.001, 0.9))
    assert ok.float().mean() > 0.95
    inter = (eraser.bool() & targets.bool()).flatten(1).sum(1).float()
    real = inter / targets.flatten(1).sum(1)
    assert torch.allclose(real[ok], cov[ok])
    assert bool(((real[ok] >= 0.001) & (real[ok] < 0.9)).all())
    assert bool((eraser[~ok] == 0).all())
    front = torch.arange(len(targets)) % 2 == 0
    cat = torch.full((len(targets),), 0.5)
    x, shown = make_inputs(targets, cat, eraser, front)
    assert x.shape == (len(targets), 2, 32, 32)
    # in front: the target is cut by the eraser; behind: uncut, and the eraser loses the target's pixels
    assert torch.equal(x[front, 0], targets[front] * (1 - eraser[front]) * 0.5)
    assert torch.equal(x[~front, 0], targets[~front] * 0.5)
    assert float((shown[~front] * targets[~front]).sum()) == 0


def test_training_reads_no_amodal_label(tmp_path):
    """A KINS 2020 file without a_segm/a_bbox/a_area trains exactly as the full file does."""
    bare = load_annotations(fx.write_kins2020(tmp_path / "bare.json", n_images=4, drop_amodal=True))
    assert not bare.has_amodal
    full = load_annotations(fx.write_kins2020(tmp_path / "full.json", n_images=4))
    m1, h1 = train_pcnet(bare, tmp_path / "bare", profile="smoke", steps=5, device="cpu", progress=False, **TINY)
    m2, _ = train_pcnet(full, tmp_path / "full", profile="smoke", steps=5, device="cpu", progress=False, **TINY)
    assert (tmp_path / "bare" / "pcnet.pt").is_file() and len(h1) == 5
    assert all(math.isfinite(h["loss"]) for h in h1)
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_reaches_the_same_weights(kins, tmp_path):
    kw = dict(profile="smoke", steps=10, device="cpu", progress=False, seed=3, **TINY)
    ref, _ = train_pcnet(kins, tmp_path / "a", **kw)
    train_pcnet(kins, tmp_path / "b", stop_after=7, **kw)   # killed after step 7; checkpoint at 5
    assert torch.load(tmp_path / "b" / "pcnet.pt", weights_only=True)["step"] == 5
    res, hist = train_pcnet(kins, tmp_path / "b", **kw)
    assert hist[-1]["step"] == 10
    for (k, a), b in zip(ref.state_dict().items(), res.state_dict().values()):
        assert torch.equal(a, b), k
    loaded = load_model(tmp_path / "b")
    assert loaded.spec() == {"width": 4, "crop": 32, "max_category": 7}
    for a, b in zip(ref.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


def test_completion_contains_the_visible_mask(kins, tmp_path):
    model, _ = train_pcnet(kins, tmp_path / "r", profile="smoke", steps=3, device="cpu", progress=False, **TINY)
    for kw in ({}, {"box": "amodal-gt"}, {"eraser": "neighbours"}, {"threshold": 1e-6}):
        pred = complete_instances(model, kins, batch_size=5, **kw)
        assert set(pred) == {i.id for i in kins}
        for inst in kins:
            r = pred[inst.id]
            assert list(r["size"]) == [inst.height, inst.width]
            assert int(M.area(M.merge([r, inst.visible], intersect=True))) == inst.visible_area
    # a near-zero threshold fills the square crop (clipped to the image)
    car = next(i for i in kins if i.occluders)
    assert int(M.area(pred[car.id])) > 2 * car.visible_area


def test_input_crops_use_occluders(kins):
    car = next(i for i in kins if i.category_id == 4)
    ped = next(i for i in kins if i.image_id == car.image_id and i.category_id == 2)
    assert ped.id in car.occluders
    x = input_crops(kins, [car, ped], square_boxes([car, ped]), 32)
    assert x[0, 1].sum() > 0                      # the pedestrian erases part of the car's frame
    assert float((x[0, 0] * x[0, 1]).sum()) == 0  # never over the car's own visible pixels


def test_load_model_missing_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="pcnet.pt"):
        load_model(tmp_path)


def test_cli_train_complete_evaluate(tmp_path, capsys, monkeypatch):
    for k, v in TINY.items():  # keep the CLI run tiny: a smoke profile made smaller
        monkeypatch.setitem(pcnet_training.DEFAULTS, k, v)
    monkeypatch.setattr(pcnet_training, "settings", lambda profile=None, **o: {**pcnet_training.DEFAULTS, **{a: b for a, b in o.items() if b is not None}})
    coco = fx.write_coco(tmp_path / "coco.json", n_images=3)          # modal-only
    kins_file = fx.write_kins2020(tmp_path / "k.json", n_images=3)
    run, pred = tmp_path / "run", tmp_path / "pred.json"
    assert cli.main(["train", "--model", "pcnet-m", "--annotations", str(coco), "--out", str(run),
                     "--profile", "smoke", "--steps", "5", "--device", "cpu"]) == 0
    assert (run / "pcnet.pt").is_file()
    assert cli.main(["complete", "--method", "pcnet-m", "--annotations", str(kins_file), "--out", str(pred),
                     "--checkpoint", str(run)]) == 0
    rows = json.loads(pred.read_text())
    assert len(rows) == 9 and {"id", "image_id", "segmentation"} <= set(rows[0])
    assert cli.main(["evaluate", "--annotations", str(kins_file), "--predictions", str(pred)]) == 0
    # the modal-only file completes too (its occluders are the touching instances)
    assert cli.main(["complete", "--method", "pcnet-m", "--annotations", str(coco), "--out",
                     str(tmp_path / "p2.json"), "--checkpoint", str(run / "pcnet.pt")]) == 0
    capsys.readouterr()
    assert cli.main(["complete", "--method", "pcnet-m", "--annotations", str(kins_file), "--out", str(pred),
                     "--checkpoint", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "pcnet.pt" in err and len(err.strip().splitlines()) == 1
    assert cli.main(["train", "--model", "pcnet-m", "--stage", "2", "--annotations", str(coco), "--out", str(run)]) == 2


def test_registry_trains_loads_and_completes_by_name(kins, tmp_path, monkeypatch):
    from amodal_lib.predict import rules
    from amodal_lib.models.amodal_vae import AmodalVAE
    monkeypatch.setattr(pcnet_training, "settings", lambda profile=None, **o: {
        **pcnet_training.DEFAULTS, **TINY, **{a: b for a, b in o.items() if b is not None}})
    run = tmp_path / "run"
    assert not registry.is_trained("pcnet-m", run)
    model = registry.train("pcnet-m", kins, run, steps=5, device="cpu", progress=False, val_annotations=kins)
    assert registry.is_trained("pcnet-m", run) and isinstance(registry.load_model("pcnet-m", run, "cpu"), PCNetM)
    assert any(h["split"] == "val" for h in pcnet_training.load_history(run))   # validation metrics logged
    ids = {i.id for i in kins}
    assert set(registry.complete("pcnet-m", kins, model)) == ids
    assert registry.complete("visible", kins) == rules.visible(kins.instances)
    vae = AmodalVAE(width=8, latent_dim=8, hidden=16).eval()
    assert set(registry.complete("amodal-vae", kins, vae, kins.instances[:4], samples=2)) == {i.id for i in kins.instances[:4]}
    with pytest.raises(ValueError, match="deterministic"):
        registry.complete("pcnet-m", kins, model, samples=2)
    with pytest.raises(ValueError, match="needs a trained model"):
        registry.complete("pcnet-m", kins)
    with pytest.raises(ValueError, match="unknown method"):
        registry.complete("spade", kins)
    with pytest.raises(ValueError, match="single training stage"):
        registry.train("pcnet-m", kins, run, stage=2)


def test_cli_train_wires_validation_and_checks_the_image_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(pcnet_training, "settings", lambda profile=None, **o: {
        **pcnet_training.DEFAULTS, **TINY, **{a: b for a, b in o.items() if b is not None}})
    kins_file = fx.write_kins2020(tmp_path / "k.json", n_images=3)
    run = tmp_path / "run"
    args = ["train", "--model", "pcnet-m", "--annotations", str(kins_file), "--out", str(run), "--steps", "5",
            "--device", "cpu"]
    assert cli.main(args + ["--images", str(tmp_path / "nowhere")]) == 2
    assert "no such image folder" in capsys.readouterr().err and not run.exists()
    assert cli.main(args + ["--val-annotations", str(kins_file), "--images", str(tmp_path)]) == 0
    assert any(h["split"] == "val" for h in pcnet_training.load_history(run))
