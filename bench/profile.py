"""Sampling profiles of the worker process with py-spy, summarised as text.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;... count``); the
summary gives, over the busy samples (py-spy leaves idle ones out), the functions with
the most self time and the flagman functions with the most inclusive time.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_OURS = ("runtime/", "triggers/", "signals/")


def pyspy_path() -> str | None:
    """py-spy from the venv of this interpreter, or from PATH."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


class PySpy:
    """``py-spy record`` attached to a running process until :meth:`stop`."""

    def __init__(self, pid: int, out: Path, rate: int = 200) -> None:
        exe = pyspy_path()
        if exe is None:
            raise RuntimeError("py-spy not found: pip install py-spy")
        self.out = out
        self.proc = subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--output", str(out), "--format", "raw",
             "--rate", str(rate), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        return summarise(self.out) if self.out.exists() else {"error": "no profile written"}


def _frame(raw: str) -> str:
    """``func (path/to/file.py:12)`` -> ``func (file.py)``, keeping package-relative paths."""
    name, _, where = raw.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for pkg in (*_OURS, "site-packages/", "python3.11/"):
        if pkg in path:
            path = (pkg if pkg in _OURS else "") + path.split(pkg, 1)[1]
            break
    return f"{name} ({path})"


def summarise(path: Path, top: int = 15) -> dict[str, Any]:
    """Top self-time frames and top inclusive flagman frames, as % of busy samples."""
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";") if "(" in f]
        if not frames:
            continue
        total += n
        self_t[frames[-1]] += n
        for f in set(frames):
            if f.split("(", 1)[1].startswith(_OURS):
                incl[f] += n

    def pct(c: Counter[str]) -> list[list[Any]]:
        return [[f, round(100 * n / total, 1)] for f, n in c.most_common(top)] if total else []

    return {"samples": total, "file": str(path), "self_top": pct(self_t),
            "flagman_inclusive_top": pct(incl)}
