"""amodal_lib: the support library of the Amodal-VAE reproduction (data, models, losses,
metrics, training loops, plots). Notebooks in ``notebooks/`` only call into it."""
__version__ = "0.1.0"
