"""Amodal-VAE's networks (supplementary 3.2) and completion API."""
import pytest
import torch
from torch import nn

from amodal_lib.models import amodal_vae as V


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return V.AmodalVAE(width=16, latent_dim=64).eval()


def test_shapes(model):
    x = (torch.rand(5, 28, 28) > 0.5).float()
    mu, logvar = model.encoder(x.unsqueeze(1))
    assert mu.shape == logvar.shape == (5, 64)
    assert model.decoder(mu).shape == (5, 28, 28)
    assert model.encode_partial(x, 1.0)[0].shape == (5, 64)
    assert model.predict_boxes(x).shape == (5, 4)
    assert model.sample_prior(3).shape == (3, 28, 28)
    mu, std = model.posterior(x)
    assert mu.shape == std.shape == (5, 64) and (std > 0).all()


def _leaves_in_forward_order(net, *inputs):
    order = []
    hooks = [m.register_forward_hook(lambda m, i, o: order.append(m)) for m in net.modules()
             if len(list(m.children())) == 0]
    net(*inputs)
    for h in hooks:
        h.remove()
    return order


@pytest.mark.parametrize("part", ["encoder", "decoder", "partial_encoder", "transformer"])
def test_batch_norm_before_every_relu(model, part):
    net = getattr(model, part)
    x = torch.zeros(2, 1, 28, 28)
    inputs = {"encoder": (x,), "decoder": (torch.zeros(2, 64),), "partial_encoder": (torch.zeros(2, 2, 28, 28),),
              "transformer": (x, torch.zeros(2))}[part]
    order = _leaves_in_forward_order(net, *inputs)
    relus = [k for k, m in enumerate(order) if isinstance(m, nn.ReLU)]
    assert relus, "no ReLU found"
    for k in relus:
        assert isinstance(order[k - 1], (nn.BatchNorm1d, nn.BatchNorm2d)), f"{part}: {order[k - 1]} before ReLU"


def test_two_residual_blocks_each_side(model):
    for net in (model.encoder, model.decoder, model.partial_encoder):
        assert sum(isinstance(m, V.ResBlock) for m in net.modules()) == 2


def test_transformer_starts_as_identity(model):
    boxes = model.predict_boxes(torch.rand(4, 28, 28), torch.randn(4))
    assert torch.allclose(boxes, torch.tensor([[0.0, 0.0, 1.0, 1.0]]).expand(4, 4))


def test_box_params_round_trip():
    b = torch.tensor([[-0.5, -0.2, 1.3, 1.0], [0.0, 0.0, 1.0, 1.0]])
    assert torch.allclose(V.params_to_box(V.box_to_params(b)), b, atol=1e-6)


def test_warp_identity_and_shift():
    p = torch.rand(3, 28, 28)
    unit = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).expand(3, 4)
    assert torch.allclose(V.warp_to_frame(p, unit, unit, 28), p, atol=1e-5)
    # a frame on the bottom-right quarter, at 14x14, sees exactly that quarter's pixels
    quarter = torch.tensor([[0.5, 0.5, 1.0, 1.0]]).expand(3, 4)
    assert torch.allclose(V.warp_to_frame(p, unit, quarter, 14), p[:, 14:, 14:], atol=1e-5)
    # and a frame twice as large holds the source in its centre, zeros around
    big = V.warp_to_frame(p, unit, torch.tensor([[-0.5, -0.5, 1.5, 1.5]]).expand(3, 4), 56)
    assert big[:, :14].abs().max() == 0 and torch.allclose(big[:, 14:42, 14:42].mean(), p.mean(), atol=0.02)


def test_complete_shapes_and_batching(model):
    x = (torch.rand(7, 28, 28) > 0.5).float()
    probs, boxes = model.complete(x)
    assert probs.shape == (7, 28, 28) and boxes.shape == (7, 4)
    assert ((probs >= 0) & (probs <= 1)).all()
    r = model.complete(x, mode="sample", n_samples=5)
    assert r.probs.shape == (7, 5, 28, 28)
    assert model.complete(x, mode="sample").probs.shape == (7, 1, 28, 28)
    gt = model.complete(x, frame="amodal")
    assert torch.equal(gt.boxes, torch.tensor([[0.0, 0.0, 1.0, 1.0]]).expand(7, 4))
    # batched == one at a time (eval mode: batch norm uses running statistics)
    one = torch.cat([model.complete(x[k:k + 1]).probs for k in range(7)])
    assert torch.allclose(one, probs, atol=1e-5)


def test_summary_lists_layers_and_parameters(model):
    s = V.summary(model)
    assert "encoder q(z|y)" in s and "ResBlock" in s and "(1, 28, 28)" in s
    assert f"{sum(p.numel() for p in model.parameters()):,}" in s


def test_architecture_is_read_from_the_model_and_drawn(model):
    import matplotlib.pyplot as plt
    from amodal_lib import viz
    parts = {p["title"].split()[0]: p for p in V.architecture(model)}
    assert set(parts) == {"encoder", "decoder", "partial", "spatial"}
    for part in parts.values():   # the blocks hold every parameter of their sub-network, and every layer ran
        assert sum(b["params"] for b in part["blocks"]) == part["params"]
        assert all(b["shape"] is not None and b["layers"] for b in part["blocks"])
    assert parts["encoder"]["blocks"][-1]["shape"] == (2 * model.latent_dim,)
    assert parts["decoder"]["blocks"][-1]["shape"] == (1, 28, 28)
    assert parts["spatial"]["blocks"][-1]["shape"] == (4,)
    assert [b["kind"] for b in parts["decoder"]["blocks"]].count("residual block (2x conv 3x3 + BN)") == 2
    assert parts["encoder"]["blocks"][1]["kind"] == "conv 3x3 /2 + BN + ReLU"
    fig = viz.plot_architecture(list(parts.values()), model.latent_dim)
    shown = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert f"{parts['decoder']['params']:,} parameters" in shown and "-> (1, 28, 28)" in shown
    plt.close(fig)
