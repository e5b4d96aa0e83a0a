"""Training, one module per model family on one shared engine (:mod:`.engine`): Amodal-VAE's
three stages (:mod:`.amodal_vae`), PCNet-M (:mod:`.pcnet`)."""
