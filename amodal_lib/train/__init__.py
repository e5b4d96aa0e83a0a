"""Training, one module per model family on one shared engine (:mod:`.engine`, with
:mod:`.distributed`, :mod:`.checkpoints` and :mod:`.timing`): Amodal-VAE's three stages
(:mod:`.amodal_vae`, :mod:`.amodal_vae_stages`, :mod:`.occlusions`, validated by
:mod:`.validation`), PCNet-M (:mod:`.pcnet`), ResNet-PSP (:mod:`.psp`), the inpainters
(:mod:`.inpaint`), SPADE (:mod:`.spade`); :mod:`.runs` checks the single-stage families' run folders,
:mod:`.folder` records the settings that made any run folder and locks it while a process trains in it.
Training may use the predictors (validation completes), never the other way round."""
