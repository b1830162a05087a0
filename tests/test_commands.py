"""README's commands as a new user types them: every `python ...` entry point README (and docs/)
names exists and answers --help, as a file (`python export/to_onnx.py`) and as a module (`python -m export.to_onnx`),
with the same output, from the repository's root and with PYTHONPATH removed (a fresh clone after
README's install step). The commands people copy from older READMEs run in both forms too."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import ROOT

OURS = ("app", "bench", "core", "demo", "export", "metrics", "runtime", "scripts", "trainer")
# The design card's commands, by file: they must keep working however README changes.
PROMISED = ("export/to_onnx.py", "demo/generate.py", "demo/app.py", "trainer/train.py", "metrics/evaluate.py")


DOC_PAGES = [ROOT / "README.md", ROOT / "demo" / "models" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def readme_entry_points(pages: list[Path] | None = None) -> list[str]:
    """Files of this repository that README (or the given pages) run with `python`, in code blocks or
    inline code."""
    text = "\n".join(p.read_text() for p in pages or [ROOT / "README.md"])
    code = re.findall(r"```[^\n]*\n(.*?)```", text, re.S) + re.findall(r"`([^`\n]+)`", text)
    found = set()
    for chunk in code:
        for module, path in re.findall(r"\bpython3? (?:-m ([\w.]+)|([\w./-]+\.py))", chunk):
            if module and module.split(".")[0] in OURS:
                path = module.replace(".", "/")  # a module, or a package run by its __main__.py
                found.add(path + "/__main__.py" if (ROOT / path).is_dir() else path + ".py")
            elif path and path.split("/")[0].removesuffix(".py") in OURS:
                found.add(path)
    return sorted(found)


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["COLUMNS"] = "100"  # argparse wraps help to the terminal's width: the same for both forms
    return env


def run(args: list[str], cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=clean_env(), capture_output=True, text=True,
                          timeout=timeout)


def as_module(path: str) -> str:
    return path.removesuffix(".py").removesuffix("/__main__").replace("/", ".")


def test_readme_names_the_commands_it_shows():
    points = readme_entry_points()
    assert {"app.py", "demo/generate.py", "export/to_onnx.py", "trainer/train.py", "metrics/evaluate.py"} <= set(points)
    missing = [p for p in points if not (ROOT / p).is_file()]
    assert not missing, f"README runs files that do not exist: {missing}"


def test_every_entry_point_answers_help_as_a_file_and_as_a_module():
    points = sorted(set(readme_entry_points()) | set(PROMISED))

    def both(path: str) -> tuple[str, subprocess.CompletedProcess, subprocess.CompletedProcess | None]:
        script = run([path, "--help"])
        module = run(["-m", as_module(path), "--help"]) if path != "app.py" else None
        return path, script, module

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(both, points))
    for path, script, module in results:
        assert script.returncode == 0, f"python {path} --help: {script.stderr[-500:]}"
        assert "usage:" in script.stdout, f"python {path} --help printed no usage"
        if module is not None:
            assert module.returncode == 0, f"python -m {as_module(path)} --help: {module.stderr[-500:]}"
            assert module.stdout == script.stdout, f"the two forms of {path} print different help"


def test_every_command_in_the_docs_names_an_entry_point_that_answers_help():
    """docs/ and demo/models/README.md show commands as modules: each must exist and answer --help."""
    points = sorted(set(readme_entry_points(DOC_PAGES)) - set(readme_entry_points()) - set(PROMISED))
    missing = [p for p in points if not (ROOT / p).is_file()]
    assert not missing, f"the docs run files that do not exist: {missing}"
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda p: (p, run(["-m", as_module(p), "--help"])), points))
    for path, r in results:
        assert r.returncode == 0 and "usage:" in r.stdout, f"python -m {as_module(path)} --help: {r.stderr[-500:]}"


def test_the_promised_commands_work_as_files(tmp_path, blobs):
    """Not only --help: a face, a training run and its export, each by its file path."""
    face = tmp_path / "a.png"
    r = run(["demo/generate.py", "--seeds", "42", "--out", str(face)])
    assert r.returncode == 0, r.stderr[-500:]
    again = tmp_path / "b.png"
    assert run(["-m", "demo.generate", "--seeds", "42", "--out", str(again)]).returncode == 0
    assert face.read_bytes() == again.read_bytes()  # seed 42 is the same face by either form

    # The trainer writes runs/<name>/Generator.pth under the folder it runs in; a bare export finds it.
    work = tmp_path / "work"
    work.mkdir()
    r = run([str(ROOT / "trainer/train.py"), "--data", str(blobs), "--recipe", "best", "--out", "runs/mine",
             "--g-width", "8", "--d-width", "8", "--batch-size", "16", "--max-steps", "1", "--quiet"], cwd=work)
    assert r.returncode == 0, r.stderr[-500:]
    r = run([str(ROOT / "export/to_onnx.py")], cwd=work)
    assert r.returncode == 0, r.stdout[-500:] + r.stderr[-500:]
    assert (work / "generator.onnx").is_file() and "runs/mine/Generator.pth" in (work / "generator.parity.json").read_text()


def test_a_bare_export_without_a_run_says_what_it_needs(tmp_path):
    r = run([str(ROOT / "export/to_onnx.py")], cwd=tmp_path)
    assert r.returncode == 2 and not list(tmp_path.iterdir())
    line = r.stderr.strip()
    assert "\n" not in line and line.startswith("error: no checkpoint given") and "--checkpoint" in line


@pytest.mark.parametrize("form", ["export/to_onnx.py", "-m export.to_onnx"])
def test_export_without_torch_or_onnx_says_which_file_installs_them(tmp_path, form):
    """After `pip install -r requirements.txt` only (no torch, no onnx): --help works, and an export
    says in one line what to install (simulated by blocking the two imports)."""
    target = repr(str(ROOT / form)) if form.endswith(".py") else repr(form.split()[-1])
    runner = "run_path" if form.endswith(".py") else "run_module"
    code = ("import sys, runpy; sys.modules['torch'] = None; sys.modules['onnx'] = None; "
            f"sys.argv = ['to_onnx'] + sys.argv[1:]; runpy.{runner}({target}, run_name='__main__')")
    help_ = run(["-c", code, "--help"], cwd=tmp_path)
    assert help_.returncode == 0 and "--checkpoint" in help_.stdout, help_.stderr[-300:]
    r = run(["-c", code, "--checkpoint", "x"], cwd=tmp_path)
    assert r.returncode == 2 and not list(tmp_path.iterdir())
    assert r.stderr.strip() == ("error: export needs torch and onnx, which are not installed: pip install -r "
                                "requirements-dev.txt (requirements.txt installs only the app and the CLI)")


def test_the_older_name_of_the_evaluation_still_runs_it(tmp_path):
    """`python -m trainer.evaluate` (the older name) runs metrics.evaluate, errors and exit codes included."""
    r = run(["-m", "trainer.evaluate", "--generator", "missing.onnx", "--data", str(tmp_path)], cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error: no images") and "\n" not in r.stderr.strip(), r.stderr[-300:]
