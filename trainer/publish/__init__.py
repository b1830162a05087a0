"""Publishing a run for others to fine-tune (python -m trainer.publish): its checkpoint as a compact
state (compact.py: float16 networks, no optimiser moments) in parts small enough for any host,
which `python -m trainer.train --finetune FOLDER` starts from."""
