"""The image layer shared by every model that reads pixels."""
import numpy as np
import pytest
import torch
from PIL import Image

from _fixtures import H, W, write_kins2020
from amodal_lib.data import images as I
from amodal_lib.data import load_annotations
from amodal_lib.errors import DataError


@pytest.fixture()
def ann(tmp_path):
    p = write_kins2020(tmp_path / "k.json", n_images=2)
    (tmp_path / "images").mkdir()
    rng = np.random.default_rng(0)
    for im in (1, 2):
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(tmp_path / "images" / f"{im:06d}.png")
    return load_annotations(p)


def test_crops_match_the_pixels(ann):
    inst = ann.instances[0]
    rgb = I.read_image(ann, inst.image_id)
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
    box = torch.tensor([[10.0, 20.0, 18.0, 28.0]])  # an 8x8 box: an 8x8 crop is the pixels themselves
    crop = I.crop_images(ann, [inst], box, 8, sampling_ratio=1)  # one sample at each pixel centre
    assert torch.allclose(crop[0], torch.from_numpy(rgb[20:28, 10:18]).permute(2, 0, 1).float() / 255, atol=1e-6)
    far = I.crop_images(ann, [inst], torch.tensor([[-50.0, -50.0, -20.0, -20.0]]), 4)
    assert far.abs().max() == 0  # outside the image reads as 0


def test_bad_images_are_named(ann, tmp_path):
    Image.new("RGB", (W + 1, H)).save(tmp_path / "images" / "000001.png")
    with pytest.raises(DataError, match=rf"000001.png: the image is {H}x{W + 1} pixels but k.json gives {H}x{W}"):
        I.read_image(ann, 1)
    (tmp_path / "images" / "000001.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="000001.png: not a readable image"):
        I.read_image(ann, 1)
    (tmp_path / "images" / "000002.png").unlink()
    with pytest.raises(FileNotFoundError, match="000002.png.*no such file"):
        I.crop_images(ann, [i for i in ann.instances if i.image_id == 2], torch.zeros(3, 4), 8)
    ann.images_dir = None
    with pytest.raises(DataError, match="no image folder"):
        I.read_image(ann, 2)
