"""scripts/compare_gans.py --report (scripts/compare_report.py): the table, figure, grid and the
page's block from run folders; the training itself is trainer.train's, tested there."""
from __future__ import annotations

import csv
import json
import shutil

from PIL import Image

from scripts.compare_gans import main as compare
from scripts.compare_report import rows_of
from trainer.train import main as train

TINY = ["--g-width", "8", "--d-width", "8", "--batch-size", "16", "--quiet"]


def write_evals(run, rows):
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "evals.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["step", "images_seen", "seconds", "fid", "kid", "precision", "recall",
                                          "near_duplicates"])
        w.writeheader()
        w.writerows(rows)


def test_the_report_fills_the_table_figure_grid_and_page(tmp_path, blobs):
    out, docs, page = tmp_path / "runs", tmp_path / "docs" / "compare", tmp_path / "which-gan.md"
    page.write_text("# Which\n\n<!-- begin: compare -->\n(nothing yet)\n<!-- end: compare -->\n")
    assert compare(["--report", "--out", str(out), "--docs", str(docs), "--page", str(page)]) == 2  # nothing to show
    assert train(["--data", str(blobs), "--recipe", "best", "--out", str(out / "best"), "--max-steps", "2", *TINY]) == 0
    write_evals(out / "best", [{"step": 1, "images_seen": 100000, "seconds": 60, "fid": 80.0, "kid": 0.05,
                                "precision": 0.5, "recall": 0.2, "near_duplicates": 10},
                               {"step": 2, "images_seen": 200000, "seconds": 120, "fid": 60.0, "kid": 0.04,
                                "precision": 0.6, "recall": 0.3, "near_duplicates": 12}])
    write_evals(out / "wgan", [{"step": 1, "images_seen": 100000, "seconds": 50, "fid": 150.0, "kid": 0.2,
                                "precision": 0.1, "recall": 0.0, "near_duplicates": 700}])
    (out / "wgan" / "compare.json").write_text(json.dumps({"failed": {"why": "non-finite loss_d", "images_seen": 120000}}))
    assert compare(["--report", "--out", str(out), "--docs", str(docs), "--page", str(page), "--only", "best,wgan"]) == 0
    text = page.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert rows[0].startswith("| `best`") and "**60.00**" in rows[0] and "| stable |" in rows[0]  # best FID first
    assert rows[1].startswith("| `wgan`") and "diverged at 120k" in rows[1]  # a failure keeps its row
    assert "](docs/compare/fid.png)" in text and "](docs/compare/grid.png)" in text and "(nothing yet)" not in text
    assert Image.open(docs / "fid.png").size[0] > 0 and Image.open(docs / "grid.png").size[1] >= 64
    assert (docs / "best-evals.csv").is_file() and (docs / "wgan-failure.json").is_file()
    assert (docs / "table.md").read_text().startswith("| entry |")
    assert (docs / "best-seeds.png").is_file() and json.loads((docs / "best-run.json").read_text())["images_seen"] > 0
    shutil.rmtree(out / "best")
    # a clone without the run folder keeps the row, its speed and its grid row from what the report kept
    before = (docs / "table.md").read_text()
    assert compare(["--report", "--out", str(out), "--docs", str(docs), "--page", str(page), "--only", "best,wgan"]) == 0
    assert (docs / "table.md").read_text() == before and Image.open(docs / "grid.png").size[1] >= 64
    # an entry started again from zero (a new machine) keeps the kept row until it has as many evaluations
    assert train(["--data", str(blobs), "--recipe", "best", "--out", str(out / "best"), "--max-steps", "1", *TINY]) == 0
    strip = (docs / "best-seeds.png").read_bytes()
    assert compare(["--report", "--out", str(out), "--docs", str(docs), "--page", str(page), "--only", "best,wgan"]) == 0
    assert (docs / "table.md").read_text() == before and (docs / "best-seeds.png").read_bytes() == strip
    write_evals(out / "best", [{"step": 1, "images_seen": 100000, "seconds": 40, "fid": 70.0, "kid": 0.05,
                                "precision": 0.5, "recall": 0.2, "near_duplicates": 10}])
    assert compare(["--report", "--out", str(out), "--docs", str(docs), "--page", str(page), "--only", "best,wgan"]) == 0
    assert "**60.00**" in (docs / "table.md").read_text() and len(rows_of(docs / "best-evals.csv")) == 2  # 1 < 2 kept
    write_evals(out / "best", [{"step": 1, "images_seen": 100000, "seconds": 40, "fid": 70.0, "kid": 0.05,
                                "precision": 0.5, "recall": 0.2, "near_duplicates": 10},
                               {"step": 2, "images_seen": 200000, "seconds": 80, "fid": 55.0, "kid": 0.03,
                                "precision": 0.6, "recall": 0.3, "near_duplicates": 9}])
    assert compare(["--report", "--out", str(out), "--docs", str(docs), "--page", str(page), "--only", "best,wgan"]) == 0
    assert "**55.00**" in (docs / "table.md").read_text() and rows_of(docs / "best-evals.csv")[-1]["fid"] == 55.0
    assert (docs / "best-seeds.png").read_bytes() != strip  # caught up: the new run's faces
    # nothing kept in these docs either: no weights, no grid, and the page links only what exists
    docs2 = tmp_path / "docs" / "other"
    assert compare(["--report", "--out", str(out), "--docs", str(docs2), "--page", str(page), "--only", "wgan"]) == 0
    assert "grid.png" not in page.read_text() and not (docs2 / "grid.png").exists()


def test_an_entrys_speed_is_its_usual_one_not_its_total_with_pauses(tmp_path):
    from scripts.compare_report import typical_speed

    losses = tmp_path / "losses.csv"
    # 10-step rows at about 48 images/s, and two while the run shared its CPU or was paused
    speeds = [48.0, 49.5, 47.0, 3.2, 48.4, 0.5, 49.1]
    losses.write_text("step,images_per_s\n" + "".join(f"{10 * (i + 1)},{v}\n" for i, v in enumerate(speeds)))
    assert typical_speed(losses) == 48.0
    assert typical_speed(tmp_path / "none.csv") is None


def test_a_row_trained_in_bf16_says_so_beside_its_speed():
    from scripts.compare_report import markdown

    row = {"name": "a", "what": "x", "images_seen": 100000, "last": {"fid": 90.0}, "seconds": 600,
           "verdict": "stable", "hardware": "cpu", "images_per_s": 61.7, "precision": "bf16"}
    table = markdown([row, {**row, "name": "b", "images_per_s": 40.0, "precision": "fp32"},
                      {**row, "name": "c", "images_per_s": None, "precision": "bf16"}])
    cells = {line.split("|")[1].strip(): line.split("|")[8].strip() for line in table.splitlines() if line.startswith("| `")}
    assert cells == {"`a`": "61.7 (bf16)", "`b`": "40.0", "`c`": "-"}
    # a run that trained on after its last evaluation: the row gives that evaluation's images and minutes
    later = markdown([{**row, "images_seen": 111000, "seconds": 900, "last": {"fid": 90.0, "images_seen": 100000,
                                                                            "seconds": 600}}])
    assert "| 100k | **90.00** |" in later and "| 10 | stable |" in later
    assert "Trained on: cpu (bf16), cpu (fp32)." in table


def test_a_recipe_whose_d_saturates_keeps_its_row_with_when_and_how(tmp_path):
    """The trainer stops such a run with an error; the comparison records it as a result and goes on."""
    import pytest

    from core.errors import UserError
    from scripts.compare_gans import BY_NAME, train_stage
    from scripts.compare_report import verdict

    class Trainer:  # stands in for the training process: what it would write and return
        stopped, said = 0, "error: D saturated: it gave every real and fake image exactly 1 for 30 steps up to step 40"

        def run(self, cmd, log):
            (log.parent / "generator.json").write_text(json.dumps({"images_seen": 5120}))
            log.write_text(f"$ {' '.join(cmd)}\n{self.said}, so ...\n")
            return 2

    run = tmp_path / "report-dcgan"
    assert train_stage(BY_NAME["report-dcgan"], run, "faces.zip", 100, 100, "cpu", Trainer(), []).startswith("D saturated")
    failed = json.loads((run / "compare.json").read_text())["failed"]
    assert failed["kind"] == "D saturated" and failed["images_seen"] == 5120 and "step 40" in failed["why"]
    assert verdict([], failed) == "stopped at 5.1k: D saturated"
    assert verdict([], {"why": "non-finite loss_d", "images_seen": 120000}) == "diverged at 120k (non-finite loss)"
    other = Trainer()
    other.said = "error: data set not found: faces.zip"
    with pytest.raises(UserError, match="data set not found"):  # anything else is the user's to fix, not a result
        train_stage(BY_NAME["wgan"], tmp_path / "wgan", "faces.zip", 100, 100, "cpu", other, [])


def test_status_says_where_each_entry_stands_and_the_hours_left(tmp_path, capsys):
    out = tmp_path / "runs"
    write_evals(out / "best", [{"step": 1, "images_seen": 100000, "seconds": 60, "fid": 80.0, "kid": 0.05,
                                "precision": 0.5, "recall": 0.2, "near_duplicates": 10}])
    (out / "best" / "generator.json").write_text(json.dumps({"images_seen": 140000}))
    (out / "best" / "losses.csv").write_text("step,images_per_s\n10,50.0\n20,2.0\n30,50.0\n")
    (out / "wgan").mkdir()
    (out / "wgan" / "compare.json").write_text(json.dumps({"failed": {"kind": "non-finite loss", "images_seen": 120000}}))
    assert compare(["--status", "--out", str(out), "--kimg", "500", "--only", "best,wgan,sngan"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "140k of 500k" in lines["best"] and "FID-5k 80.00 at 100k" in lines["best"]
    assert "50 images/s, 2.0 h left" in lines["best"]  # 360,000 images at its usual 50 images/s
    assert "stopped for good: non-finite loss at 120k" in lines["wgan"]
    assert "not started" in lines["sngan"]
    assert "about 2.0 h" in lines["training"] and "sngan, not timed yet" in lines["training"]
