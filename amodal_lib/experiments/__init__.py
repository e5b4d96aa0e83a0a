"""The studies built on the trained models, one module per study; each takes records and models and
returns tables (pandas) and numbers, and the notebooks plot them with :mod:`amodal_lib.viz`.

- :mod:`.comparison`: every completion method on one split, the main table and what it says
  (notebooks 05, 06, 09);
- :mod:`.per_instance`: where the per-instance invisible mIoU is won or lost against PCNet-M, by
  groups of instances (notebook 05);
- :mod:`.analysis`: the supplementary's analyses, tables in, numbers out (notebooks 04-09);
- :mod:`.stages`: what notebooks 01-03 show of Amodal-VAE's training stages;
- :mod:`.segmentation_input`: completion of predicted visible masks, supplementary Table 1
  (notebook 11);
- :mod:`.edit`: scene editing, removing objects from an image (notebook 12, ``amodal edit``);
- :mod:`.inpaint_quality`: the inpainters against OpenCV's fills inside holes of known content
  (notebook 12);
- :mod:`.pose`: new poses of an instance drawn by the SPADE renderer (notebook 13).
"""
