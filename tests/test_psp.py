"""The segmentation-input experiment: ResNet-PSP, `amodal segment`, `complete --visible`,
other visible masks for every method, and the controlled corruptions."""
import json
import shutil

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import _fixtures as fx
from amodal_lib import cli, registry
from amodal_lib.data import load_annotations
from amodal_lib.data import masks as M
from amodal_lib.data.corruption import corrupt_masks
from amodal_lib.data.records import with_visible
from amodal_lib.errors import CheckpointError, PredictionError
from amodal_lib.models.psp import ResNetPSP, load_backbone_weights
from amodal_lib.train import psp as psp_training

TINY = dict(backbone="resnet18", stages=2, head_channels=8, crop=32, batch_size=4, steps=3, eval_every=3,
            eval_instances=12, checkpoint_every=3, log_every=1, threads=1, optimizer="adam", lr=1e-3)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny_settings(monkeypatch):
    """The CLI's runs made tiny: every profile's settings replaced by TINY (then the overrides)."""
    monkeypatch.setattr(psp_training, "settings", lambda profile=None, **o: {
        **psp_training.DEFAULTS, **TINY, **{a: b for a, b in o.items() if b is not None}})


@pytest.mark.parametrize("stages, stride, side", [(2, 8, 32), (3, 8, 40), (4, 16, 32), (3, 4, 32)])
def test_psp_forward_shapes(stages, stride, side):
    m = ResNetPSP("resnet18", stages=stages, output_stride=stride, head_channels=8).eval()
    x = torch.rand(2, 3, side, side)
    assert m(x).shape == (2, 1, side, side)
    assert m.features(x).shape[-1] == -(-side // stride)   # the backbone keeps its output stride
    wide = torch.rand(1, 3, 24, 48)                         # any crop shape runs
    assert m(wide).shape == (1, 1, 24, 48)
    assert ResNetPSP(**m.spec()).spec() == m.spec()


def test_psp_bottleneck_backbone_and_bad_settings():
    m = ResNetPSP("resnet50", stages=4, output_stride=8, head_channels=8).eval()
    assert m.features(torch.rand(1, 3, 32, 32)).shape == (1, 2048, 4, 4)
    for kw, text in ((dict(backbone="vgg16"), "backbone must be"), (dict(stages=5), "stages must be"),
                     (dict(output_stride=2), "output_stride must be"), (dict(box="full"), "box must be")):
        with pytest.raises(ValueError, match=text):
            ResNetPSP(**kw)


def test_a_local_weights_file_loads_into_the_backbone(tmp_path):
    src = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(src.state_dict(), path)
    m = ResNetPSP("resnet18", stages=3)
    assert load_backbone_weights(m, path) > 0
    assert torch.equal(m.backbone["layer2"][0].conv1.weight, src.layer2[0].conv1.weight)
    torch.save({"state_dict": {"module.conv1.weight": torch.zeros(64, 1, 7, 7)}}, tmp_path / "gray.pth")
    with pytest.raises(CheckpointError, match=r"gray.pth: tensor conv1.weight has shape \(64, 1, 7, 7\)"):
        load_backbone_weights(m, tmp_path / "gray.pth")
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="other.pth: holds no tensor of a resnet18 backbone"):
        load_backbone_weights(m, tmp_path / "other.pth")


def _kins_with_images(tmp_path, n_images=3):
    path = fx.write_kins2020(tmp_path / "k.json", n_images=n_images)
    (tmp_path / "images").mkdir()
    rng = np.random.default_rng(0)
    for im in range(1, n_images + 1):
        Image.fromarray(rng.integers(0, 255, (fx.H, fx.W, 3), dtype=np.uint8)).save(tmp_path / "images" / f"{im:06d}.png")
    return path


def test_with_visible_swaps_masks_and_keeps_the_order(tmp_path):
    ann = load_annotations(fx.write_kins2020(tmp_path / "k.json", n_images=2))
    boxes = {i.id: M.encode(np.pad(np.ones((10, 10), np.uint8), ((5, fx.H - 15), (0, fx.W - 10)))) for i in ann}
    swapped = with_visible(ann, boxes)
    for a, b in zip(ann.instances, swapped.instances):
        assert b.visible is boxes[a.id] and b.visible_area == 100 and b.visible_box == (0.0, 5.0, 10.0, 10.0)
        assert b.touches_border and b.occluders == a.occluders and b.amodal is a.amodal   # the file's GT order
    assert ann.instances[0].visible_area != 100   # the original is untouched
    modal = load_annotations(fx.write_coco(tmp_path / "c.json", n_images=2))
    apart = {i.id: M.encode((np.arange(fx.W)[None] == 3 * k + 1) * np.ones((fx.H, 1), np.uint8))
             for k, i in enumerate(modal)}
    assert all(not i.occluders for i in with_visible(modal, apart).instances)   # recomputed: nothing touches
    with pytest.raises(PredictionError, match=f"masks.json: prediction for annotation {ann.instances[0].id}.*no mask"):
        with_visible(ann, {}, "masks.json")


def test_complete_from_visible_is_complete_on_the_given_masks(tmp_path):
    from amodal_lib.models.amodal_vae import AmodalVAE
    ann = load_annotations(fx.write_kins2020(tmp_path / "k.json", n_images=2))
    gt = {i.id: i.visible for i in ann}
    vae = AmodalVAE(width=8, latent_dim=8, hidden=16).eval()
    for frame in ("fit", "transformer"):
        a = registry.complete("amodal-vae", ann, vae, frame=frame)
        assert registry.complete_from_visible("amodal-vae", ann, gt, vae, frame=frame) == a
    eroded = corrupt_masks(ann.instances, "erosion", 1)
    eroded[ann.instances[0].id] = M.empty(fx.H, fx.W)
    out = registry.complete_from_visible("convex-hull", ann, eroded)
    assert M.area(out[ann.instances[0].id]) == 0                       # nothing to complete: left empty
    k = ann.instances[1]
    assert M.area(M.merge([out[k.id], eroded[k.id]], intersect=True)) == M.area(eroded[k.id])


def test_corruptions_move_the_boundary_by_their_strength(tmp_path):
    ann = load_annotations(fx.write_kins2020(tmp_path / "k.json", n_images=2))
    inst = ann.instances
    area = {i.id: i.visible_area for i in inst}
    er1, er3 = corrupt_masks(inst, "erosion", 1), corrupt_masks(inst, "erosion", 3)
    di1, di3 = corrupt_masks(inst, "dilation", 1), corrupt_masks(inst, "dilation", 3)
    for i in inst:
        assert 0 < M.area(er3[i.id]) < M.area(er1[i.id]) < area[i.id] < M.area(di1[i.id]) < M.area(di3[i.id])
        assert M.area(M.merge([er1[i.id], i.visible], intersect=True)) == M.area(er1[i.id])   # inside the mask
    big = corrupt_masks(inst, "erosion", 50)
    assert all(M.area(big[i.id]) > 0 for i in inst)                    # never empty
    n1, n2 = corrupt_masks(inst, "boundary-noise", 2, seed=1), corrupt_masks(inst, "boundary-noise", 2, seed=1)
    assert n1 == n2 and n1 != corrupt_masks(inst, "boundary-noise", 2, seed=2)
    assert corrupt_masks(inst, "dilation", 0) == {i.id: i.visible for i in inst}
    with pytest.raises(ValueError, match="kind must be"):
        corrupt_masks(inst, "blur", 1)


def test_train_segment_complete_round_trip_through_the_cli(tmp_path, capsys, tiny_settings):
    from _fixtures_vae import tiny_dataset
    data = tiny_dataset()
    run, masks, pred = tmp_path / "run", tmp_path / "masks.json", tmp_path / "pred.json"
    assert cli.main(["train", "--model", "resnet-psp", "--annotations", data["train"], "--images", data["images_dir"],
                     "--out", str(run), "--device", "cpu"]) == 0
    assert (run / "psp.pt").is_file() and "kept step 3" in capsys.readouterr().out
    test = data["test"]
    assert cli.main(["segment", "--checkpoint", str(run), "--annotations", test, "--out", str(masks)]) == 0
    assert "against the file's visible masks" in capsys.readouterr().out
    ann = load_annotations(test)
    rows = json.loads(masks.read_text())
    assert sorted(r["id"] for r in rows) == sorted(i.id for i in ann)
    given = {r["id"]: r["segmentation"] for r in rows}
    assert all(M.area(M.segm_to_rle(s, ann.instances[0].height, ann.instances[0].width)) > 0 for s in given.values())
    assert cli.main(["complete", "--method", "visible", "--annotations", test, "--visible", str(masks),
                     "--out", str(pred)]) == 0
    assert {r["id"]: r["segmentation"]["counts"] for r in json.loads(pred.read_text())} == \
        {k: s["counts"] for k, s in given.items()}                     # the visible "completion" is the input
    assert cli.main(["evaluate", "--annotations", test, "--predictions", str(pred)]) == 0
    # a learned method completes the predicted masks too (PCNet-M, two steps)
    from amodal_lib.train.pcnet import train_pcnet
    train_pcnet(data["train"], tmp_path / "pc", profile="smoke", steps=2, device="cpu", progress=False, width=4, crop=32)
    assert cli.main(["complete", "--method", "pcnet-m", "--checkpoint", str(tmp_path / "pc"), "--annotations", test,
                     "--visible", str(masks), "--out", str(pred)]) == 0
    for r in json.loads(pred.read_text()):     # every completion contains the (predicted) visible mask
        v = M.segm_to_rle(given[r["id"]], *r["segmentation"]["size"])
        c = M.segm_to_rle(r["segmentation"], *r["segmentation"]["size"])
        assert M.area(M.merge([v, c], intersect=True)) == M.area(v)
    capsys.readouterr()
    assert cli.main(["complete", "--method", "visible", "--annotations", test, "--visible", str(masks),
                     "--out", str(masks)]) == 2                        # an output never overwrites an input
    assert "visible masks file" in capsys.readouterr().err
    short = tmp_path / "short.json"
    short.write_text(json.dumps(rows[1:]))
    assert cli.main(["complete", "--method", "visible", "--annotations", test, "--visible", str(short),
                     "--out", str(pred)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--visible {short}: no mask for 1 of" in err


def test_bad_image_input_is_one_line_naming_the_file(tmp_path, capsys, tiny_settings):
    ann = _kins_with_images(tmp_path)
    run = tmp_path / "run"
    assert cli.main(["train", "--model", "resnet-psp", "--annotations", str(ann), "--out", str(run),
                     "--device", "cpu"]) == 0
    out = tmp_path / "m.json"
    cases = [(lambda p: p.unlink(), "000002.png", "no such file"),
             (lambda p: p.write_bytes(b"not a png"), "000002.png", "not a readable image"),
             (lambda p: p.write_bytes(p.read_bytes()[:200]), "000002.png", "not a readable image"),   # truncated
             (lambda p: Image.new("RGB", (fx.W + 1, fx.H)).save(p), "000002.png",
              f"the image is {fx.H}x{fx.W + 1} pixels but k.json gives {fx.H}x{fx.W}")]
    for damage, name, text in cases:
        capsys.readouterr()
        img = tmp_path / "images" / "000002.png"
        shutil.copy(tmp_path / "images" / "000001.png", tmp_path / "keep.png")
        damage(img)
        for argv in (["segment", "--checkpoint", str(run), "--annotations", str(ann), "--out", str(out)],
                     ["train", "--model", "resnet-psp", "--annotations", str(ann), "--out", str(tmp_path / "r2"),
                      "--no-resume"]):
            assert cli.main(argv) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and name in err and text in err and "Traceback" not in err, err
        shutil.copy(tmp_path / "keep.png", img)
    shutil.rmtree(tmp_path / "images")
    assert cli.main(["segment", "--checkpoint", str(run), "--annotations", str(ann), "--out", str(out)]) == 2
    assert "--images DIR is needed" in capsys.readouterr().err
    assert cli.main(["train", "--model", "resnet-psp", "--annotations", str(ann), "--out", str(run)]) == 2
    assert "reads the images: give --images DIR" in capsys.readouterr().err
    assert cli.main(["train", "--model", "pcnet-m", "--weights", str(ann), "--annotations", str(ann),
                     "--out", str(run)]) == 2
    assert "applies to --model resnet-psp only" in capsys.readouterr().err
    assert not out.exists()
