"""Partial convolutions (Liu et al. 2018) against hand-computed cases, the U-Net, the loss, the VGG file."""
import pytest
import torch

from amodal_lib.errors import CheckpointError, MissingCheckpointError
from amodal_lib.models.inpaint import (FixedFeatures, InpaintingLoss, PartialConv2d, PConvUNet, gram,
                                            load_vgg16_features, pyramid_fill, smooth_fill, total_variation)


def ones_layer(cin=1, mask_channels=1, bias=0.5):
    layer = PartialConv2d(cin, 1, 3, padding=1, mask_channels=mask_channels)
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.bias.fill_(bias)
    return layer


def test_renormalisation_and_mask_update_by_hand():
    # 4x4 input 1..16; known: the top-left 2x2 block (values 1, 2, 5, 6)
    x = torch.arange(1.0, 17.0).view(1, 1, 4, 4)
    m = torch.zeros(1, 1, 4, 4)
    m[..., :2, :2] = 1
    y, new = ones_layer()(x, m)
    # (0, 0): the window holds 1, 2, 5, 6 (4 known of 9 entries): 14 * 9 / 4 + 0.5
    assert y[0, 0, 0, 0].item() == pytest.approx(14 * 9 / 4 + 0.5)
    # (1, 1): same four known values, the window is whole: 14 * 9 / 4 + 0.5
    assert y[0, 0, 1, 1].item() == pytest.approx(14 * 9 / 4 + 0.5)
    # (2, 2): only 6 is known: 6 * 9 / 1 + 0.5
    assert y[0, 0, 2, 2].item() == pytest.approx(6 * 9 + 0.5)
    # (1, 2): 2 and 6 known: 8 * 9 / 2 + 0.5
    assert y[0, 0, 1, 2].item() == pytest.approx(8 * 9 / 2 + 0.5)
    # (3, 3): no known value in the window: 0, bias included, and the mask stays 0 there
    assert y[0, 0, 3, 3].item() == 0.0
    expected = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]], dtype=torch.float32)
    assert torch.equal(new[0, 0], expected)   # the hole shrank by one pixel
    # the unknown values never matter
    x2 = x.clone()
    x2[m == 0] = -1000.0
    assert torch.allclose(ones_layer()(x2, m)[0], y)


def test_a_mask_per_channel_counts_every_entry():
    # channel 0 known only at the centre, channel 1 (a label) known everywhere
    x = torch.zeros(1, 2, 3, 3)
    x[0, 0, 1, 1] = 4.0
    x[0, 1] = 1.0
    m = torch.zeros(1, 2, 3, 3)
    m[0, 0, 1, 1] = 1
    m[0, 1] = 1
    layer = ones_layer(cin=2, mask_channels=2, bias=0.0)
    y, new = layer(x, m)
    # centre: known entries 1 (channel 0) + 9 (channel 1) of 18: (4 + 9) * 18 / 10
    assert y[0, 0, 1, 1].item() == pytest.approx(13 * 18 / 10)
    # corner (0, 0): 4 window entries of channel 1 inside the image and the centre of channel 0: (4 + 4) * 18 / 5
    assert y[0, 0, 0, 0].item() == pytest.approx(8 * 18 / 5)
    assert bool((new == 1).all())
    with pytest.raises(ValueError):
        layer(x, torch.ones(1, 3, 3, 3))


def test_a_full_mask_is_a_plain_convolution():
    torch.manual_seed(0)
    layer = PartialConv2d(3, 5, 3, padding=1)
    x = torch.randn(2, 3, 8, 8)
    y, new = layer(x, torch.ones(2, 1, 8, 8))
    ref = torch.nn.functional.conv2d(x, layer.weight, layer.bias, padding=1)
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))   # the border windows are renormalised
    assert torch.allclose(y[inner], ref[inner], atol=1e-5)
    assert bool((new == 1).all())


def test_unet_shapes_and_the_residual_start():
    torch.manual_seed(0)
    net = PConvUNet(3, 3, width=4, depth=3)
    x, m = torch.rand(2, 3, 16, 24), (torch.rand(2, 1, 16, 24) > 0.3).float()
    assert net(x * m, m).shape == (2, 3, 16, 24)
    cond = PConvUNet(4, 3, width=4, depth=3, mask_channels=4)
    assert cond(torch.rand(2, 4, 16, 16), torch.ones(2, 4, 16, 16)).shape == (2, 3, 16, 16)
    res = PConvUNet(3, 3, width=4, depth=3, fill="smooth")   # its last layer starts at zero: the smooth fill
    assert torch.allclose(res(x * m, m), smooth_fill(x * m, m))
    base = torch.rand(2, 3, 16, 24)
    assert torch.allclose(res(x * m, m, base), base)
    with pytest.raises(ValueError):
        PConvUNet(3, 3, width=4, depth=3, fill="telea")(x * m, m)   # needs its base
    assert PConvUNet(**res.spec()).spec() == res.spec()


def test_pyramid_fill_keeps_the_known_pixels_and_fills_the_rest():
    x = torch.zeros(1, 3, 8, 8)
    x[..., :, :4] = 1.0
    m = torch.ones(1, 1, 8, 8)
    m[..., 2:6, 2:6] = 0
    f = pyramid_fill(x * m, m)
    assert torch.equal(f * m, x * m)
    assert 0.0 < float(f[0, 0, 4, 3]) <= 1.0 and float(f[0, 0, 4, 4]) < float(f[0, 0, 4, 3])


def test_loss_terms():
    loss = InpaintingLoss()
    t = torch.rand(2, 3, 16, 16)
    known = torch.ones(2, 1, 16, 16)
    known[..., 4:10, 4:10] = 0
    zero = loss(t.clone(), t, known)
    assert all(float(zero[k]) == pytest.approx(0.0, abs=1e-7) for k in ("valid", "hole", "perceptual", "style"))
    out = t.clone()
    out[..., 4:10, 4:10] += 0.5                  # wrong only in the hole
    terms = loss(out, t, known)
    assert float(terms["valid"]) == 0.0
    assert float(terms["hole"]) == pytest.approx(0.5 * 36 / 256)   # L1 divided by the number of values
    assert float(terms["loss"]) > 6 * float(terms["hole"])
    # total variation: only pairs inside the hole grown by one pixel count
    comp = torch.zeros(1, 1, 6, 6)
    comp[..., 0, 0] = 1.0                                            # far from the hole: not counted
    hole = torch.zeros(1, 1, 6, 6)
    hole[..., 3, 3] = 1
    assert float(total_variation(comp, hole)) == 0.0
    comp[..., 3, 3] = 1.0
    assert float(total_variation(comp, hole)) == pytest.approx(4 / 36)
    assert gram(torch.ones(1, 2, 2, 2)).shape == (1, 2, 2)
    assert [f.shape[1] for f in FixedFeatures()(t)] == [9, 9, 9]


def _small_vgg(weights=None):
    """VGG-16's first 17 feature layers (the same indices), 4-8-16 channels wide: the loader's path
    without the cost of the real network."""
    from torch import nn
    layers, cin = [], 3
    for v in (4, 4, "M", 8, 8, "M", 16, 16, 16, "M"):
        layers += [nn.MaxPool2d(2)] if v == "M" else [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
        cin = v if v != "M" else cin
    return type("VGG", (), {"features": nn.Sequential(*layers)})()


def test_vgg_weights_file(tmp_path, monkeypatch):
    import torchvision.models
    monkeypatch.setattr(torchvision.models, "vgg16", _small_vgg)
    with pytest.raises(MissingCheckpointError):
        load_vgg16_features(tmp_path / "none.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_vgg16_features(bad)
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, wrong)
    with pytest.raises(CheckpointError, match="not VGG-16"):
        load_vgg16_features(wrong)
    good = tmp_path / "vgg16.pth"   # a whole state dict; only its features.* entries are read
    torch.save({**{f"features.{k}": v for k, v in _small_vgg().features.state_dict().items()},
                "classifier.0.weight": torch.zeros(2, 2)}, good)
    feats = load_vgg16_features(good)
    assert [f.shape[1] for f in feats(torch.rand(1, 3, 32, 32))] == [4, 8, 16]
    assert not any(p.requires_grad for p in feats.parameters())
    loss = InpaintingLoss(feats)
    t = torch.rand(1, 3, 32, 32)
    assert float(loss(t, t, torch.ones(1, 1, 32, 32))["perceptual"]) == 0.0
