"""Inference, one module per model family: instance records (and images) in, masks (RLE) or
images out.

:mod:`.amodal_vae` completes with Amodal-VAE (the fitted frame, or the paper's transformer frame),
:mod:`.pcnet` with PCNet-M, :mod:`.rules` with the rules that need no training (the visible mask,
its convex hull); :mod:`.psp` predicts visible masks from the images, :mod:`.inpaint` fills holes
and :mod:`.spade` draws an instance in a new mask. :mod:`amodal_lib.registry` reaches every family
by name. Nothing here imports training.
"""
