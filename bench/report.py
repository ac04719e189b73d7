"""Shared by the benchmark scripts: machine description, text and Markdown tables, appending to docs/benchmarks.md.

Not a library module: the scripts in bench/ import it after putting their own folder on ``sys.path``.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MD = ROOT / "docs" / "benchmarks.md"
PLACEHOLDER = "_No results recorded yet._"


#: seconds over which machine_info() measures what other processes use of the CPU
QUIET_WINDOW = 2.0


def cpu_snapshot() -> tuple[float, float, float]:
    """(CPU seconds all processes have used, this process's CPU seconds, wall clock), from /proc/stat and os.times."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    own = os.times()
    return busy, own.user + own.system, time.perf_counter()


def other_cpu_share(start: tuple[float, float, float]) -> float:
    """Share of the usable cores that *other* processes (and the hypervisor's steal) used since ``start``: 0 on a
    quiet machine; a contended step is slower for reasons that have nothing to do with the code under test."""
    busy, own, now = cpu_snapshot()
    cores = len(os.sched_getaffinity(0))
    return max(0.0, (busy - start[0]) - (own - start[1])) / max(1e-9, (now - start[2]) * cores)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """What a reader needs to compare two results: CPU, cores, torch build and thread count, load."""
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    try:
        info["loadavg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    try:  # what others use now (the load average lags: in a chain of benchmarks it counts the previous one)
        start = cpu_snapshot()
        time.sleep(QUIET_WINDOW)
        info["other_cpu"] = round(other_cpu_share(start), 3)
    except (OSError, ValueError, AttributeError):  # no /proc/stat (not Linux)
        pass
    return info


def machine_line(info: dict[str, Any]) -> str:
    parts = [
        f"{info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable)",
        f"torch {info['torch']}, torch.get_num_threads()={info['torch_threads']}",
    ]
    if "transformers" in info:
        parts.append(f"transformers {info['transformers']}")
    parts.append(f"python {info['python']}")
    if "loadavg_1m" in info:
        parts.append(f"1-min load average at start {info['loadavg_1m']}")
    if "other_cpu" in info:
        parts.append(f"other processes used {100 * info['other_cpu']:.0f}% of the cores over {QUIET_WINDOW:.0f} s at start")
    return "; ".join(parts)


def busy_warning(info: dict[str, Any]) -> str | None:
    """A warning when other work is running: with torch using every core, a busy machine does not just add noise,
    it can make small ops many times slower (threads spin waiting for each other)."""
    other, cores = info.get("other_cpu"), info.get("usable_cores") or 1
    if other is not None:  # measured at start; the load average would count a benchmark that just ended
        if other > 0.25:
            return (f"WARNING: the machine is busy (other processes used {100 * other:.0f}% of the {cores} usable "
                    "cores at start); these timings are not representative")
        return None
    load = info.get("loadavg_1m")
    if load is not None and load > 0.25 * cores:
        return (f"WARNING: the machine is busy (1-min load average {load} on {cores} usable cores); "
                "these timings are not representative")
    return None


def command_line() -> str:
    return "python " + shlex.join(sys.argv)


def _cells(rows: Sequence[Sequence[Any]]) -> list[list[str]]:
    return [[c if isinstance(c, str) else fmt(c) for c in row] for row in rows]


def fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:  # nan
            return "n/a"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.3g}"
    return str(v)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = _cells(rows)
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))
    out = [line, "-" * len(line)]
    for r in cells:
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(out)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = _cells(rows)
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"
    out = ["| " + " | ".join(headers) + " |", rule]
    out += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join(out)


def append_section(title: str, body: str, info: dict[str, Any], *, path: Path | str = DEFAULT_MD) -> Path:
    """Append a dated section (command line, machine, then ``body``) to the results of docs/benchmarks.md."""
    path = Path(path)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"\n### {title} — {now}\n\n"
        f"- command: `{command_line()}`\n"
        f"- machine: {machine_line(info)}\n"
        + (f"- **{busy_warning(info)}**\n" if busy_warning(info) else "")
        + "\n"
        f"{body.rstrip()}\n"
    )
    text = path.read_text() if path.exists() else "# Benchmarks\n\n## Results\n"
    if PLACEHOLDER in text:
        text = text.replace(PLACEHOLDER + "\n", "").replace(PLACEHOLDER, "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n" + section)
    return path


def start(threads: int | None) -> dict[str, Any]:
    """Common start of every benchmark: set torch's thread count, print the machine line and any busy
    warning, and return the machine info for the Markdown section."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    info = machine_info()
    print(machine_line(info))
    if busy_warning(info):
        print(busy_warning(info))
    return info


def recording_trainer_class() -> type:
    """GRPOTrainer, unchanged, except that it keeps the episodes of the last step (for counting tokens)."""
    from r1gym.core.grpo import GRPOTrainer

    class RecordingTrainer(GRPOTrainer):
        last_episodes: list = []

        def rollout(self, timings):
            episodes, stats = super().rollout(timings)
            self.last_episodes = episodes
            return episodes, stats

    return RecordingTrainer
