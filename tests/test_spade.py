"""The SPADE renderer: normalisation, generator and discriminator steps, new poses,
paste-back, the registry, and `amodal train --model spade` / `amodal render` on a tiny file."""
import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from _fixtures_vae import tiny_dataset
from amodal_lib import cli, registry
from amodal_lib.experiments import pose
from amodal_lib.data import load_annotations
from amodal_lib.data import masks as M
from amodal_lib.errors import CheckpointError
from amodal_lib.models import spade as S
from amodal_lib.predict import spade as P
from amodal_lib.train import engine as E
from amodal_lib.train import spade as T
from amodal_lib.train import timing

TINY = dict(crop=16, start=4, ngf=4, max_mult=2, spade_hidden=4, ndf=4, enc_ndf=4, z_dim=8, d_layers=2, num_d=2,
            batch_size=4, pad=1.25)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny():
    paths = tiny_dataset()
    return {s: load_annotations(paths[s]) for s in ("train", "val", "test")}


def _tiny_model():
    torch.manual_seed(0)
    return T.build_model({**T.DEFAULTS, **TINY})


# --------------------------------------------------------------------------- networks
def test_spade_norm_shapes_and_the_mask_modulates_each_pixel():
    torch.manual_seed(0)
    norm = S.SPADE(6, hidden=5).eval()
    x = torch.randn(2, 6, 8, 8)
    mask = torch.zeros(2, 32, 32)            # any resolution: resized to the features'
    out = norm(x, mask)
    assert out.shape == x.shape
    changed = mask.clone()
    changed[:, :8, :8] = 1                    # the top-left corner only
    diff = (norm(x, changed) - out).abs().amax(1)
    assert diff[:, :3, :3].min() > 0          # the mask changes the output where it changed ...
    assert diff[:, 5:, 5:].max() == 0         # ... and only there (two 3x3 convolutions reach 2 pixels)
    assert S.SPADE(6, norm="instance")(x, mask).shape == x.shape


def test_generator_encoder_and_discriminator_shapes():
    m = _tiny_model().eval()
    masks = (torch.rand(3, 16, 16) > 0.5).float()
    rgb = torch.rand(3, 3, 16, 16) * 2 - 1
    z, mu, logvar = m.appearance(rgb, masks)
    assert z.shape == mu.shape == logvar.shape == (3, 8)
    out, alpha = m.generator(masks, z)
    assert out.shape == (3, 3, 16, 16) and alpha.shape == (3, 16, 16) and out.abs().max() <= 1
    out2, _ = m.generator(1 - masks, z)
    assert not torch.allclose(out, out2)      # the mask changes the rendering
    scores = m.discriminate(out, masks)
    assert len(scores) == 2 and scores[0][-1].shape[:2] == (3, 1)
    assert scores[1][-1].shape[-1] < scores[0][-1].shape[-1]   # the second scale sees a smaller image
    with pytest.raises(ValueError, match="power of two"):
        S.SPADEGenerator(crop=24, start=4)


def test_one_generator_and_discriminator_step_on_a_tiny_batch(tmp_path):
    """One engine step with two optimisers: both networks move, the losses are finite, and the
    generator phase does not step the discriminator (its Adam state is the discriminator phase's)."""
    cfg = {**T.DEFAULTS, **TINY}
    m = T.build_model(cfg)
    g = torch.Generator().manual_seed(0)
    data = {"rgb": torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=g),
            "mask": (torch.rand(8, 16, 16, generator=g) > 0.4).to(torch.uint8)}
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opts = {"g": lambda mod: torch.optim.Adam([*mod.generator.parameters(), *mod.encoder.parameters()], 1e-3,
                                              betas=(0.0, 0.9)),
            "d": lambda mod: torch.optim.Adam(mod.discriminator.parameters(), 1e-3, betas=(0.0, 0.9))}
    tr = E.Trainer(m, opts, data, batch_size=4, steps=1, run_dir=tmp_path, name="spade", stage="spade",
                   step_fn=T._step_fn(cfg, None), device="cpu", progress=False, log_every=1)
    hist = tr.fit()
    rec = hist[-1]
    assert {"loss_g", "loss_d", "g_gan", "feat", "kl", "l1", "alpha_bce", "d_real", "d_fake"} <= set(rec)
    assert all(np.isfinite(rec[k]) for k in ("loss_g", "loss_d"))
    moved = {k.split(".")[0] for k, v in m.state_dict().items() if v.dtype.is_floating_point
             and not torch.equal(v, before[k])}
    assert {"generator", "encoder", "discriminator"} <= moved
    assert len(tr.optimizers["d"].state) == len(list(m.discriminator.parameters()))
    assert not any(p in tr.optimizers["g"].state for p in m.discriminator.parameters())


def test_vgg_term_needs_a_local_weights_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such VGG19 weights file"):
        S.VGGLoss(tmp_path / "vgg19.pth")
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="not usable as VGG19 weights"):
        S.VGGLoss(tmp_path / "bad.pth")


# --------------------------------------------------------------------------- poses and paste-back
def test_mask_edits():
    m = torch.zeros(1, 16, 16)
    m[0, 4:14, 6:9] = 1                                   # a standing bar, bottom row 13
    assert torch.equal(pose.mirror(m)[0, :, 7:10], m[0, :, 6:9])
    sh = pose.shear(m, 0.5)
    assert torch.equal(sh[0, 13], m[0, 13])               # the bottom row stays where it stood
    top = torch.nonzero(sh[0, 5]).flatten()
    assert top.min() > 6                                  # rows above it lean right
    d, spread = pose.latent_direction(torch.randn(20, 4) * torch.tensor([5.0, 1, 1, 1]))
    assert abs(float(d.norm()) - 1) < 1e-5 and abs(float(d[0])) > 0.9 and spread > 1


def test_latent_poses_land_in_the_crop():
    from amodal_lib.models.amodal_vae import AmodalVAE
    torch.manual_seed(0)
    vae = AmodalVAE(width=8, latent_dim=8, hidden=16).eval()
    z = torch.randn(2, 8)
    box = torch.tensor([[10.0, 10.0, 30.0, 30.0]] * 2)
    same = pose.decode_to_crops(vae, z, box, box, 28, threshold=0.5)
    direct = (torch.sigmoid(vae.decoder(z)) >= 0.5).float()
    assert torch.equal(same, direct)                      # the same frame: the decoding itself
    half = pose.decode_to_crops(vae, z, box, torch.tensor([[10.0, 10.0, 50.0, 50.0]] * 2), 28)
    assert half[:, 14:, 14:].sum() == 0                   # a frame twice as large: the mask fills its top-left


def test_local_fill_and_composite():
    img = np.zeros((20, 30, 3), np.uint8)
    img[:, :15] = (200, 10, 10)
    img[:, 15:] = (10, 10, 200)
    hole = np.zeros((20, 30), bool)
    hole[8:12, 5:25] = True
    filled = P.local_fill(img, hole)
    assert (filled[~hole] == img[~hole]).all()
    assert filled[10, 6, 0] > 150 and filled[10, 23, 2] > 150   # each side takes its neighbours' colour
    rgb, alpha = torch.ones(3, 8, 8), torch.zeros(8, 8)
    alpha[2:6, 2:6] = 1
    keep = np.zeros((20, 30), bool)
    keep[9, 10] = True
    out = P.composite_into(img, [8, 6, 16, 14], rgb, alpha, hole, keep=keep,
                           fill=lambda im, h: np.where(h[..., None], 0, im).astype(np.uint8))
    assert (out[10, 11] == 255).all()                     # the rendering, through its alpha
    assert (out[8, 5] == 0).all()                         # the hole, by the given fill
    assert (out[9, 10] == img[9, 10]).all()               # what hides the object stays on top
    assert (out[0] == img[0]).all()


# --------------------------------------------------------------------------- training, registry, CLI
@pytest.fixture(scope="module")
def run(tiny, tmp_path_factory):
    run = tmp_path_factory.mktemp("spade") / "run"
    model = T.train_spade(tiny["train"], run, profile="smoke", device="cpu", steps=3, progress=False,
                          val_annotations=tiny["val"], **{k: v for k, v in TINY.items()}, eval_every=3,
                          eval_instances=10, checkpoint_every=3, log_every=1, threads=1)
    assert model.history[-1]["split"] == "val" and "val_silhouette_iou" in model.history[-1]
    return run


def test_training_timing_and_registry(run, tiny):
    assert registry.is_trained("spade", run) and not registry.is_trained("spade", run.parent / "nowhere")
    t = timing.read(run, "spade")
    assert t["steps"] == 3 and t["cpu_s"] > 0 and t["prepare_cpu_s"] >= 0
    model = registry.load_model("spade", run, "cpu")
    assert isinstance(model, S.SpadeRenderer) and model.crop == 16 and model.config["pad"] == 1.25
    assert "spade" not in registry.METHODS                # a renderer, not a completion method
    with pytest.raises(ValueError, match="single training stage"):
        registry.train("spade", tiny["train"], run, stage=2)
    table, _ = pose.reconstruction_table(model, tiny["train"], tiny["test"], max_instances=12)
    assert len(table) == 5 and table["L1 (grey levels)"].notna().all()


def _mask_png(path, inst, flip=True):
    m = M.decode(inst.visible).astype(np.uint8) * 255
    Image.fromarray(m[:, ::-1] if flip else m).save(path)
    return path


def test_cli_trains_and_renders(run, tiny, tmp_path, capsys):
    ann = tiny["test"]
    inst = max(T.whole_instances(ann), key=lambda i: i.visible_area)
    image = ann.image_path(inst)
    mask = _mask_png(tmp_path / "new.png", inst, flip=False)
    out = tmp_path / "out.png"
    argv = ["render", "--checkpoint", run, "--image", image, "--annotations", ann.path, "--id", inst.id,
            "--mask", mask, "--out", out, "--device", "cpu"]
    assert cli.main([str(a) for a in argv]) == 0
    before, after = np.asarray(Image.open(image).convert("RGB")), np.asarray(Image.open(out))
    assert after.shape == before.shape
    x0, y0, x1, y1 = P.square_boxes(P.mask_box(M.decode(inst.visible)), 1.25)[0].tolist()   # the crop drawn in
    far = np.ones(before.shape[:2], bool)
    far[max(int(y0), 0):int(np.ceil(y1)), max(int(x0), 0):int(np.ceil(x1))] = False
    assert (after[far] == before[far]).all()              # only the crop changes
    assert not (after[~far] == before[~far]).all()
    capsys.readouterr()
    train_run = tmp_path / "cli_run"
    assert cli.main(["train", "--model", "spade", "--annotations", str(ann.path), "--out", str(train_run),
                     "--profile", "smoke", "--steps", "2", "--device", "cpu"]) == 0
    assert "SPADE: trained to step 2" in capsys.readouterr().out


def test_render_bad_input_is_one_line_and_exit_2(run, tiny, tmp_path, capsys):
    ann = tiny["test"]
    inst = T.whole_instances(ann)[0]
    image = ann.image_path(inst)
    good = _mask_png(tmp_path / "m.png", inst)
    Image.fromarray(np.zeros((7, 9), np.uint8)).save(tmp_path / "small.png")
    Image.fromarray(np.zeros((inst.height, inst.width), np.uint8)).save(tmp_path / "empty.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    out = tmp_path / "o.png"
    base = {"--checkpoint": run, "--image": image, "--annotations": ann.path, "--id": inst.id, "--mask": good,
            "--out": out}
    cases = [({"--mask": tmp_path / "nowhere.png"}, "nowhere.png"), ({"--mask": tmp_path / "small.png"}, "7x9"),
             ({"--mask": tmp_path / "empty.png"}, "empty"), ({"--mask": tmp_path / "junk.png"}, "not a readable image"),
             ({"--image": tmp_path / "small.png"}, "the image is 7x9"), ({"--id": 987654}, "no annotation with this id"),
             ({"--out": image}, "the image"), ({"--out": good}, "the mask"), ({"--out": tmp_path / "o.jpg"}, "PNG"),
             ({"--checkpoint": tmp_path / "bad.pt"}, "bad.pt"), ({"--checkpoint": tmp_path / "none"}, "spade.pt"),
             ({"--annotations": tmp_path / "junk.png"}, "junk.png")]
    digest = hashlib.sha1(image.read_bytes()).hexdigest()
    for change, text in cases:
        args = {**base, **change}
        capsys.readouterr()
        rc = cli.main(["render", *[str(a) for kv in args.items() for a in kv]])
        err = capsys.readouterr().err
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        assert rc == 2 and len(lines) == 1 and "Traceback" not in err, (change, err)
        assert text in lines[0], (change, lines[0])
    assert not out.exists() and hashlib.sha1(image.read_bytes()).hexdigest() == digest
