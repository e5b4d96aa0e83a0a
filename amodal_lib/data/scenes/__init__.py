"""How one scene of the embedded data set is made, one idea a file:

- :mod:`.camera`: the pinhole camera, 2D convex shapes, a 3D model placed and projected;
- :mod:`.shapes`, :mod:`.vehicles`, :mod:`.people`: the parametric 3D part models;
- :mod:`.placement`: the road layout and where objects go in it;
- :mod:`.scene`: :func:`scene`, the masks, visibility, occlusion clusters and annotations;
- :mod:`.render`: the RGB image.

The data set on disk (splits, files, cache, datasheet) is :mod:`amodal_lib.data.synth`.
"""
from .scene import MAX_INSTANCES, MIN_AMODAL_AREA, MIN_INSTANCES, MIN_VISIBLE_AREA, scene

__all__ = ["scene", "MIN_AMODAL_AREA", "MIN_VISIBLE_AREA", "MIN_INSTANCES", "MAX_INSTANCES"]
