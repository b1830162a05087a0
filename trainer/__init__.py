"""Training, model definitions and evaluation of 64x64 anime-face GANs."""
