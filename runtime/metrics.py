"""Process counters, exposed on the HTTP endpoint and logged at shutdown."""

from __future__ import annotations

from collections import Counter


class Metrics:
    """Monotonic counters (Prometheus ``_total`` semantics)."""

    def __init__(self) -> None:
        self._c: Counter[str] = Counter()

    def add(self, **counts: int) -> None:
        for k, v in counts.items():
            if v:
                self._c[k] += v

    def snapshot(self) -> dict[str, int]:
        return dict(self._c)

    def prometheus(self) -> str:
        lines = []
        for k in ("signals", "duplicates", "dead_lettered", "commands", "batches"):
            lines.append(f"# TYPE flagman_{k}_total counter")
            lines.append(f"flagman_{k}_total {self._c.get(k, 0)}")
        return "\n".join(lines) + "\n"
