"""latentatlas: map, search and travel the latent space of style-based GANs."""

__version__ = "0.1.0"
