"""One GPU call of the long training run: continue the published state (or start it), train until a
deadline measured from the call's own start, and leave a complete snapshot in the output folder
every ~90 s, so a call killed at any moment still returns the latest one.

    python -m trainer.long_run --data data/anime-faces-64-q80.zip --state checkpoints/sngan-long \\
        --out $OUT --budget-s 510 --proxy .gpu/proxy.pt --bf16 --channels-last

What the output folder holds (at most 8 files of at most 16 MiB, 64 MiB in all; checked before
training starts, with the limits given):
- `snap-a.part00`, `snap-a.part01`, `snap-b.*`: two slots of the compact resumable state
  (trainer/compact.py); each snapshot fills the older slot, then points `snapshot.json` at it,
  so one slot is always complete.
- `snapshot.json` (written last): the latest slot and its sha256s, the generator card, the call's
  history (time, images seen, images/s, the proxy metric, D accuracy, near-duplicates, events).
- `Generator.pth`: the EMA generator as float16, BatchNorm statistics measured for it.

Early checks at every snapshot (NaN or infinite losses, D's accuracy stuck near 1, near-duplicate
faces, the proxy metric getting much worse) roll the run back to the last good state and switch to
the fallback: for a run started in this call, the `best` recipe (the one that trained stably on an
H200 before); for a resumed run, the same recipe at half the learning rates.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.dataset import dataset_fingerprint, load_images
from core.errors import UserError, command
from trainer.compact import compact_state, load_state, rewarm, to_bytes
from trainer.config import Recipe, get_recipe
from trainer.options import fill_run_defaults
from trainer.run_files import parameter_count
from trainer.run_state import RunState, TrainingError
from trainer.snapshots import Limits, Snapshots, latest_state, read_pointer  # noqa: F401  (used by scripts, tests)
from trainer.train import class_labels
from trainer.training_loop import TrainingLoop

log = logging.getLogger("trainer")
FALLBACK_RECIPE = "best"


class Fallback(Exception):
    """An early check failed: roll back and train on with the fallback."""



# ----------------------------------------------------------------------------- early checks

@dataclass
class Checks:
    max_d_acc: float = 0.99          # D tells every image apart: G learns nothing more
    max_near_duplicates: float = 0.35  # share of faces with a near twin (real images: about 1 %; the
    #                                   shipped default 13 %, the two collapsed H200 runs 49 and 75 %)
    max_proxy_rise: float = 0.5      # proxy worse by half since the call began (resumed runs only)

    def verdict(self, row: dict, first: dict | None, resumed: bool) -> str | None:
        """Why the run must fall back, or None. A fresh run's first snapshot is too early to judge
        its variety: near-duplicates count from the second one."""
        if row.get("d_acc") is not None and row["d_acc"] > self.max_d_acc:
            return f"D accuracy {row['d_acc']:.3f} > {self.max_d_acc}"
        judged = resumed or first is not None
        if judged and row.get("near_duplicates") is not None and row["near_duplicates"] > self.max_near_duplicates:
            return f"{100 * row['near_duplicates']:.0f} % near-duplicate faces"
        if (resumed and first and first.get("proxy") and row.get("proxy")
                and row["proxy"] > first["proxy"] * (1 + self.max_proxy_rise)):
            return f"proxy {row['proxy']:.1f} against {first['proxy']:.1f} at the start"
        return None


@torch.no_grad()
def measure(s: RunState, proxy, n: int) -> dict:
    """The proxy metric and the near-duplicate share of n faces from fixed seeds (EMA generator)."""
    if proxy is None or n < 2:
        return {}
    from core.images import to_uint8
    from core.seeds import latents

    g = s.generator_for_export().eval()
    z = torch.from_numpy(latents(range(n), s.r.z_dim)).to(s.device)
    y = (torch.arange(n, device=s.device) % s.n_classes) if s.n_classes else None
    faces = np.concatenate([to_uint8(g(z[i:i + 250], None if y is None else y[i:i + 250]).float().cpu().numpy())
                            for i in range(0, n, 250)])
    from metrics.diversity import nearest
    from metrics.kernels import frechet

    feats = proxy.features(faces)
    d, _ = nearest(feats, feats, exclude_self=True)
    near = float((d < proxy.info.get("dup_threshold", 0.0)).mean())

    return {"proxy": round(frechet(feats.mean(0), np.cov(feats, rowvar=False), proxy.mu, proxy.sigma), 3),
            "near_duplicates": round(near, 4), "proxy_n": n}


# ----------------------------------------------------------------------------- one call

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trainer.long_run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="the training images (folder or .zip)")
    p.add_argument("--state", type=Path, help="a published state or a call's output folder to continue "
                                              "(absent or empty: start the run)")
    p.add_argument("--recipe", default="sngan", help="recipe for a fresh start (default sngan)")
    p.add_argument("--out", type=Path, required=True, help="the call's output folder ($OUT)")
    p.add_argument("--work", type=Path, default=Path("/tmp/long-run"),
                   help="the run folder's working copy (not brought back; default /tmp/long-run)")
    p.add_argument("--budget-s", type=float, default=510, help="the whole call ends by this many seconds after "
                                                                 "--started-at (default 510)")
    p.add_argument("--started-at", type=float, help="the call's start, Unix seconds (default: now)")
    p.add_argument("--snapshot-s", type=float, default=90, help="seconds between snapshots (default 90)")
    p.add_argument("--proxy", type=Path, help="metrics/proxy.py's file: the proxy metric and near-duplicates")
    p.add_argument("--proxy-n", type=int, default=2000, help="faces per proxy measurement (default 2000)")
    p.add_argument("--precision", default="fp16", choices=["fp16", "fp32"], help="of the snapshots (default fp16)")
    p.add_argument("--part-bytes", type=int, default=Limits.part_bytes)
    p.add_argument("--max-files", type=int, default=Limits.max_files)
    p.add_argument("--max-bytes", type=int, default=Limits.max_bytes)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--max-steps", type=int, help="stop after this many steps in total (tests)")
    p.add_argument("--force-fallback", type=int, default=0, help="tests: fail the early check at this snapshot")
    p.add_argument("--no-checks", action="store_true", help="no early checks (tests: tiny networks make every "
                                                           "face a near-duplicate)")
    p.add_argument("--override", nargs="*", default=[], metavar="FIELD=VALUE",
                   help="recipe fields for a fresh start (tests: g_width=8 d_width=8 batch_size=8)")
    return p.parse_args(argv)


def _overrides(pairs: list[str]) -> dict:
    types = {f.name: f.type for f in dataclasses.fields(Recipe)}
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in types:
            raise UserError(f"--override: {key!r} is not a recipe field")
        out[key] = {"int": int, "float": float, "bool": lambda v: v.lower() in ("1", "true")}.get(types[key], str)(value)
    return out


def _train_args(a: argparse.Namespace, deadline: float) -> argparse.Namespace:
    args = argparse.Namespace(device=a.device, bf16=a.bf16, channels_last=a.channels_last, compile=False,
                              no_tf32=False, seed=0, quiet=True, max_steps=a.max_steps, max_minutes=None,
                              checkpoint_minutes=a.snapshot_s / 60, log_every=a.log_every, eval_every=0,
                              eval_n=5000, eval_ref_n=10000, deadline=deadline)
    fill_run_defaults(args)
    return args


def _build(recipe: Recipe, images, a, deadline, data_info, state: dict | None) -> RunState:
    # Until a snapshot has been timed, 30 s are kept for the last one (each snapshot then sets its own margin).
    args = _train_args(a, deadline - 30)
    if state is not None:
        args.seed = state.get("seed", 0)
    labels, names = class_labels(recipe, images, state.get("classes") if state else None)
    s = RunState(recipe, images, args, data_info, labels, names)
    if state is not None:
        s.load_state_dict(state)
        if state.get("opt_g") is None:
            log.info("optimiser moments re-measured over %d steps (learning rate 0)", rewarm(s))
    return s


def _fallback(recipe: Recipe, resumed: bool, a: argparse.Namespace) -> Recipe:
    """A resumed run keeps its recipe at half the learning rates; a fresh one takes the fallback recipe."""
    if resumed:
        return dataclasses.replace(recipe, lr_g=recipe.lr_g / 2, lr_d=recipe.lr_d / 2)
    sizes = {k: v for k, v in _overrides(a.override).items() if k in ("g_width", "d_width", "batch_size")}
    return get_recipe(FALLBACK_RECIPE, **sizes)


def run_call(a: argparse.Namespace) -> int:
    started = a.started_at or time.time()
    deadline = started + a.budget_s
    limits = Limits(a.part_bytes, a.max_files, a.max_bytes)
    if not a.data.exists():
        raise UserError(f"no training data at {a.data}: send it with the call (carry) or stage it first")
    state, source = None, "fresh"
    if a.state and (a.state / "snapshot.json").is_file():
        state, source = latest_state(a.state)[0], str(a.state)
    elif a.state and (a.state / "state.json").is_file():
        state, source = load_state(a.state), str(a.state)
    resumed = state is not None
    recipe = Recipe.from_dict(state["recipe"]) if resumed else get_recipe(a.recipe, **_overrides(a.override))
    images, skipped = load_images(a.data)
    data_info = {"path": str(a.data), "images": int(len(images)), "skipped": skipped,
                 "sha256": dataset_fingerprint(a.data)}
    gpu = torch.cuda.is_available() and a.device != "cpu"
    proxy = None
    if a.proxy and a.proxy.is_file():
        from metrics.proxy import Proxy

        proxy = Proxy(a.proxy, "cuda" if gpu else "cpu")
    elif a.proxy:
        log.warning("no proxy file at %s: snapshots go without the proxy metric and the near-duplicate check", a.proxy)
    s = _build(recipe, images, a, deadline, data_info, state)
    call = {"started_at": started, "budget_s": a.budget_s, "from": source, "recipe": recipe.name,
            "device": torch.cuda.get_device_name() if gpu else "cpu", "images_at_start": s.images_seen,
            "seconds_at_start": s.seconds, "events": []}
    snaps = Snapshots(a.out, limits, a.precision, call, list(state.get("runs", [])) if state else [])
    # Everything must come back: a snapshot's size is measured before any training.
    limits.check(len(to_bytes(compact_state(s, a.precision))), 2 * parameter_count(s.g) + 2**16)
    log.info("call: %s, recipe %s, %.0f s budget from the call's start (%.0f s used), %d images seen so far",
             source, recipe.name, a.budget_s, time.time() - started, s.images_seen)
    checks, first, count = Checks(), None, [0]
    fallback_done = False

    def on_save(run: RunState) -> None:
        nonlocal first
        t0 = time.time()
        count[0] += 1
        row = {"t": round(t0 - started, 1), "step": run.step, "images_seen": run.images_seen, "recipe": run.r.name,
               **_last_losses(loop), **measure(run, proxy, a.proxy_n)}
        snaps.losses = loop.losses.history if loop.losses else []
        forced = a.force_fallback and count[0] == a.force_fallback and not fallback_done
        why = (None if a.no_checks else checks.verdict(row, first, resumed)) or ("forced for a test" if forced else None)
        if why and not fallback_done and t0 < deadline - 30:
            snaps.history.append({**row, "event": f"early check failed: {why}"})
            raise Fallback(why)
        first = first or row
        snaps.history.append(row)
        snaps.write(run)
        # Leave room for the last snapshot: twice what this one took, and at least 15 s.
        run.args.deadline = deadline - max(15.0, 2 * (time.time() - t0))
        log.info("snapshot %d at %.0f s: step %d, %d images seen%s", count[0], row["t"], run.step, run.images_seen,
                 f", proxy {row['proxy']:.1f}" if "proxy" in row else "")

    work = a.work / f"call-{int(started)}"  # this call's own: no losses.csv of another run
    while True:
        work.mkdir(parents=True, exist_ok=True)
        loop = TrainingLoop(s, work, on_save=on_save, plot=False)
        try:
            loop.run()
            break
        except (Fallback, TrainingError) as exc:
            if fallback_done or time.time() > deadline - 30:
                raise
            fallback_done = True
            back = _restore(snaps.last_good) if snaps.last_good else state
            recipe = _fallback(recipe, resumed, a)
            call["events"].append({"t": round(time.time() - started, 1), "why": str(exc),
                                   "then": f"{recipe.name} (lr_g {recipe.lr_g:g}, lr_d {recipe.lr_d:g})"})
            log.warning("early check failed (%s): rolled back; training on with %s", exc, call["events"][-1]["then"])
            s = _build(recipe, images, a, deadline, data_info, back if resumed else None)
            for opt, lr in ((s.opt_g, recipe.lr_g), (s.opt_d, recipe.lr_d)):  # the fallback's, not the state's
                for group in opt.param_groups:
                    group["lr"] = lr
            if not resumed:  # the fallback run starts from nothing
                call["images_at_start"], call["seconds_at_start"] = 0, 0.0
    done = snaps.runs(s)[-1]
    log.info("call done in %.0f s: %d -> %d images seen, %.0f images/s", time.time() - started,
             done["images_at_start"], done["images_at_end"], done["images_per_s"])
    return 0


def _restore(data: bytes) -> dict:
    from trainer.compact import from_bytes

    return from_bytes(data, "the last snapshot")


def _last_losses(loop: TrainingLoop) -> dict:
    rows = loop.losses.history if loop.losses else []
    if not rows:
        return {}
    last = rows[-1]
    return {k: round(float(last[k]), 4) for k in ("loss_d", "loss_g", "d_acc", "images_per_s") if k in last}


@command
def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stdout)
    return run_call(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
