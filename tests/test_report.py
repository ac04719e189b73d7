"""``r1gym report RUN`` (issue 17, item 7): report.md with PNG plots and a self-contained report.html for a train run,
an eval run and a pipeline, from real runs of a tiny random model; the page is rendered in a real headless browser
when one is installed (``make browser-deps``)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from r1gym.core.config import compose
from r1gym.core.report import CHARTS, build_report, fmt
from r1gym.core.stages import run_stage

COMMON = ["env=arithmetic", "rollout.max_new_tokens=6", "trainer.threads=1", "logger=jsonl_only"]
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    """A 3-step GRPO run with a KL term and a held-out evaluation at the end, and an eval run of the same model."""
    root = tmp_path_factory.mktemp("runs")
    train, ev = root / "train", root / "eval"
    run_stage(compose([f"model.name_or_path={tiny_model_dir}", *COMMON, "algo.prompts_per_step=2", "algo.group_size=4",
                       "algo.micro_batch_size=4", "algo.beta=0.04", "trainer.max_steps=3", "trainer.save_every=100",
                       "eval.at_start=false", "eval.at_end=true", "eval.num_problems=2", f"run_dir={train}"]), train)
    run_stage(compose(["stage=eval", f"model.name_or_path={tiny_model_dir}", *COMMON, "eval.num_problems=3",
                       "eval.samples=2", f"run_dir={ev}"]), ev)
    return train, ev


class _Page(HTMLParser):
    """Every tag's attributes, to check what the page would load."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _self_contained(page: Path) -> list[bytes]:
    """The PNGs inlined in the page; fails on anything it would fetch (a src or href that is not inline data)."""
    parser = _Page()
    parser.feed(page.read_text())
    for tag, attrs in parser.tags:
        for name in ("src", "href"):
            assert attrs.get(name, "data:").startswith("data:"), f"<{tag} {name}={attrs[name]!r}> loads from outside"
        assert tag not in ("link", "iframe", "object")
    return [base64.b64decode(a["src"].split(",", 1)[1]) for t, a in parser.tags if t == "img"]


def test_a_train_run_report_has_every_curve_the_run_logged_and_its_samples(runs, tmp_path):
    train, _ = runs
    md_path, page = build_report(train, tmp_path / "out", samples=2)
    md = md_path.read_text()
    metrics = [json.loads(ln) for ln in (train / "metrics.jsonl").read_text().splitlines()]
    for name, title, _ in CHARTS:  # this run logs every one of them (beta > 0: KL too)
        assert f"![{title}](plots/{name}.png)" in md
        assert (tmp_path / "out" / "plots" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Not in this run's metrics" not in md
    last = metrics[-1]
    for key in ("reward/arithmetic", "reward/format", "kl", "entropy", "clip_frac", "unscorable/count", "time/generate"):
        assert f"| {key} | {fmt(metrics[0][key])} | {fmt(last[key])} |" in md, key  # the table of every metric: first and last value
    assert "## Held-out evaluations" in md and "| 3 |" in md  # the evaluation at the end, at step 3
    samples = [json.loads(ln) for ln in (train / "samples.jsonl").read_text().splitlines()]
    best = max((s for s in samples if s["step"] == last["step"]), key=lambda s: s["reward"])
    assert "## Sampled completions" in md and best["completion"] in md

    inlined = _self_contained(page)
    assert inlined == [(tmp_path / "out" / "plots" / f"{name}.png").read_bytes() for name, _, _ in CHARTS]
    assert "<h2>Sampled completions</h2>" in page.read_text()


def test_a_run_without_a_series_says_so(runs, tmp_path):
    train, _ = runs
    run = tmp_path / "run"
    shutil.copytree(train, run, ignore=shutil.ignore_patterns("checkpoints"))
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    (run / "metrics.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "kl"}) + "\n" for r in rows))
    md = build_report(run)[0].read_text()
    assert "Not in this run's metrics: KL to the reference policy." in md and "plots/kl.png" not in md


def test_without_matplotlib_the_report_has_no_plots_and_says_so_once(runs, tmp_path, monkeypatch, caplog):
    import sys

    from r1gym.core import report

    train, _ = runs
    run = tmp_path / "run"
    shutil.copytree(train, run, ignore=shutil.ignore_patterns("checkpoints"))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # an install without the report extra
    report._pyplot.cache_clear()
    try:
        md = build_report(run)[0].read_text()
    finally:
        report._pyplot.cache_clear()
    assert "plots/" not in md and "| reward/mean |" in md  # the tables are still there
    warned = [r for r in caplog.records if "matplotlib is not installed" in r.getMessage()]
    assert len(warned) == 1, [r.getMessage() for r in warned]


def test_an_eval_run_report_has_the_scores_and_graded_completions(runs, tmp_path):
    _, ev = runs
    md = build_report(ev, tmp_path, samples=2)[0].read_text()
    results = json.loads((ev / "eval.json").read_text())
    (name, m), = results["datasets"].items()
    assert f"| {name} | 3 | {fmt(m['pass@1'])} | {fmt(m['cons@2'])} |" in md
    assert "## Graded completions" in md and "Mean reward per component" in md
    graded = [json.loads(ln) for ln in (ev / "eval_samples.jsonl").read_text().splitlines()]
    assert graded[0]["completion"] in md


def test_a_pipeline_report_has_the_overview_and_each_stage(runs, tmp_path):
    train, ev = runs
    manifest = {"pipeline": "two_stages", "stages": {
        "r1_zero": {"status": "finished", "run_dir": str(train), "stage": "r1_zero",
                    "outputs": {"checkpoint": str(train / "checkpoints" / "step_000003")},
                    "eval": json.loads((ev / "eval.json").read_text())},
        "check": {"status": "finished", "run_dir": str(ev), "stage": "eval"}}}
    (tmp_path / "pipeline.json").write_text(json.dumps(manifest))
    md = build_report(tmp_path)[0].read_text()
    assert md.startswith("# Pipeline `two_stages`")
    for heading in ("## Evaluation after each stage", "## RL stages: reward and completion length over training",
                    "## Stage 1: r1_zero", "### Training curves", "## Stage 2: check", "### Graded completions"):
        assert heading in md
    assert (tmp_path / "plots" / "1-r1_zero.png").exists() and (tmp_path / "plots" / "1-r1_zero" / "kl.png").exists()
    assert len(_self_contained(tmp_path / "report.html")) == 1 + len(CHARTS)


def test_the_cli_writes_the_report_and_names_what_a_run_folder_needs(runs, tmp_path, capsys):
    from r1gym.core.cli import main

    train, _ = runs
    assert main(["report", str(train), "--out", str(tmp_path / "r")]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "r" / "report.md"), str(tmp_path / "r" / "report.html")]
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "holds no run to report on: a train run has metrics.jsonl" in capsys.readouterr().err


def test_the_page_renders_in_a_headless_browser(runs, tmp_path):
    browser = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no headless browser on PATH (chromium, chromium-browser, google-chrome): `make browser-deps` "
                    "installs Debian's chromium")
    train, _ = runs
    page = build_report(train, tmp_path)[1]
    # a copy of the page that, once loaded, writes the decoded size of every image into the DOM
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", "<script>addEventListener('load', () => "
                     "{document.body.dataset.decoded = [...document.images].map(i => i.naturalWidth).join(' ')})"
                     "</script></body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000"]
    dom = subprocess.run([browser, *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120).stdout
    widths = dom.split('data-decoded="', 1)[1].split('"', 1)[0].split()
    assert len(widths) == len(CHARTS) and all(int(w) > 0 for w in widths), widths

    shot = tmp_path / "shot.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    from PIL import Image

    colors = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50, "the screenshot is (nearly) blank"
