"""An encoder per generator, to find a drawn face in the generator's space (python -m trainer.encoder):
run.py trains it on the generator's own faces (no real images), __main__.py is the command, and
refine/ improves a found latent by gradient descent (python -m trainer.encoder.refine). Its export
is python -m export.encoder."""
