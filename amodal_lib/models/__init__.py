"""Networks only (and their losses), one module per model family: Amodal-VAE (:mod:`.amodal_vae`),
PCNet-M (:mod:`.pcnet`, on the UNet of :mod:`.unet`), ResNet-PSP (:mod:`.psp`), the inpainters'
partial-convolution U-Net (:mod:`.inpaint`), the SPADE renderer (:mod:`.spade`); checkpoint files
are read and written by :mod:`.weights`. Nothing here trains or reads a data set."""
