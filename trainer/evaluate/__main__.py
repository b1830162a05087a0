"""`python -m trainer.evaluate ...` runs `python -m metrics.evaluate ...` (its older name)."""
import runpy

if __name__ == "__main__":
    runpy.run_module("metrics.evaluate", run_name="__main__", alter_sys=True)
