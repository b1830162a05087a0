"""Distillation: a trained generator into a narrower one that draws the same faces (python -m trainer.distill).

run.py is the run (teacher, student, files, evaluations), pruning.py the student's start (the
teacher's most active channels), adversary.py the optional discriminator, __main__.py the command.
"""
