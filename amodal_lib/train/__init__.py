"""Training: a model-agnostic engine (:mod:`.engine`) and Amodal-VAE's three stages (:mod:`.amodal_vae`)."""
