"""Models: Amodal-VAE (:mod:`.amodal_vae`)."""
