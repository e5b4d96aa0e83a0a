"""Networks only, one module per model family: Amodal-VAE (:mod:`.amodal_vae`), PCNet-M
(:mod:`.pcnet`, on the UNet of :mod:`.unet`)."""
