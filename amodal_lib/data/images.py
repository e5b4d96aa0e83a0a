"""The images behind an annotation set: read with one clear error, and cropped by boxes.

Every model that reads pixels (the segmentation network, the inpainters, the SPADE renderer)
goes through here:

- :func:`read_image` opens ``ann.image_path(image_id)`` with Pillow as HxWx3 uint8 RGB and checks
  it against the size the annotation file gives; a missing, unreadable or wrongly sized image is
  one :class:`~amodal_lib.errors.DataError` (or ``MissingFileError``) naming the file.
- :func:`crop_images` cuts (N, 3, S, S) float crops in [0, 1] out of the images by xyxy boxes
  with ``torchvision.ops.roi_align(aligned=True)`` (the frame convention of
  :mod:`amodal_lib.data.crops`), each image read once; :func:`image_tensor` is one image as a
  (3, H, W) float tensor.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torchvision.ops import roi_align

from ..errors import DataError, MissingFileError
from .records import AnnotationSet, Instance, group_by_image


def read_image(ann: AnnotationSet, image_id) -> np.ndarray:
    """The RGB image of ``image_id`` (HxWx3 uint8), checked against the file's image size."""
    from PIL import Image, UnidentifiedImageError
    if ann.images_dir is None:
        raise DataError(f"{ann.path}: no image folder is known for these annotations (give --images DIR, "
                        "or keep the images in an 'images' folder beside the file)")
    info = ann.images.get(image_id)
    if info is None:
        raise DataError(f"{ann.path}: unknown image id {image_id!r}")
    path = Path(ann.images_dir) / str(info.get("file_name"))
    if not path.is_file():
        raise MissingFileError(path, None, "", f"image {image_id} of {Path(ann.path).name}: no such file")
    want = (int(info["height"]), int(info["width"]))
    try:
        with Image.open(path) as im:   # reads the header only: the size is checked before any pixel is decoded
            if (im.height, im.width) != want:
                raise DataError(f"{path}: the image is {im.height}x{im.width} pixels but {Path(ann.path).name} "
                                f"gives {want[0]}x{want[1]} for image {image_id}")
            rgb = np.array(im.convert("RGB"))   # writable: torch.from_numpy warns on a read-only array
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: not a readable image ({type(e).__name__}: {str(e)[:120]})") from None
    return rgb


def image_tensor(ann: AnnotationSet, image_id) -> torch.Tensor:
    """One image as a (3, H, W) float tensor in [0, 1]."""
    return torch.from_numpy(read_image(ann, image_id)).permute(2, 0, 1).float().div_(255.0)


def crop_images(ann: AnnotationSet, instances: Sequence[Instance], boxes, size: int,
                sampling_ratio: int = 2) -> torch.Tensor:
    """(N, 3, size, size) crops in [0, 1] of each instance's image in ``boxes`` ((N, 4) xyxy image
    pixels; may reach outside the image, which reads as 0). Each image is read once."""
    b = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    if len(b) != len(instances):
        raise ValueError(f"{len(instances)} instances but {len(b)} boxes")
    out = torch.zeros(len(instances), 3, size, size)
    for image_id, idx in group_by_image(instances, positions=True).items():
        img = image_tensor(ann, image_id)[None]
        rois = torch.cat([torch.zeros(len(idx), 1), b[idx]], dim=1)
        out[idx] = roi_align(img, rois, (size, size), 1.0, sampling_ratio, aligned=True)
    return out
