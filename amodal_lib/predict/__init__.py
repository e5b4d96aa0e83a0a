"""Inference, one module per trained model family: instance records in, amodal masks (RLE) out.

:mod:`.amodal_vae` completes with Amodal-VAE (the fitted frame, or the paper's transformer frame),
:mod:`.pcnet` with PCNet-M. The rules that need no training (visible mask, convex hull) are in
:mod:`amodal_lib.predict.rules`; :mod:`amodal_lib.registry` reaches every method by name.
"""
