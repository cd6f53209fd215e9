"""Generated workloads whose expected command set is plain set logic.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from triggers import command_id


@dataclass
class JoinWorkload:
    """Daily table partitions and join triggers waiting for 2-3 of them, like a warehouse.

    Trigger ``{prefix}.{i}`` waits for its tables on the same ``dt``; the expected command
    set is, for each trigger and day, "all its tables landed that day". Records come day
    by day (shuffled within a sliding window), with re-sent duplicates and malformed
    records mixed in.
    """

    triggers: int
    tables: int
    days: int
    seed: int = 1
    prefix: str = "fx"
    miss_rate: float = 0.03
    dup_rate: float = 0.03
    bad_rate: float = 0.002
    specs: list[tuple[int, ...]] = field(init=False)

    def __post_init__(self) -> None:
        rng = random.Random(f"{self.seed}:triggers")
        self.specs = [tuple(rng.sample(range(self.tables), rng.choice((2, 2, 3))))
                      for _ in range(self.triggers)]
        rng = random.Random(f"{self.seed}:landed")
        self.landed = [{t for t in range(self.tables) if rng.random() >= self.miss_rate}
                       for _ in range(self.days)]

    @staticmethod
    def table(t: int) -> str:
        return f"t{t:05d}"

    @staticmethod
    def dt(d: int) -> str:
        return f"d{d:04d}"

    def trigger_id(self, i: int) -> str:
        return f"{self.prefix}.{i:05d}"

    def yaml(self) -> str:
        out = []
        for i, tabs in enumerate(self.specs):
            leaves = ", ".join(
                f"{{signal: table_ready, where: {{table: {self.table(t)}}}}}" for t in tabs
            )
            out.append(f"- id: {self.trigger_id(i)}\n  workflow: wf{i % 16}\n"
                       f"  when: {{all: [{leaves}]}}\n  join: [dt]\n")
        return "".join(out)

    def signal(self, t: int, d: int) -> bytes:
        return json.dumps({"name": "table_ready", "params": {"table": self.table(t), "dt": self.dt(d)}},
                          separators=(",", ":")).encode()

    def valid_signals(self) -> int:
        return sum(len(s) for s in self.landed)

    def records(self) -> list[bytes]:
        rng = random.Random(f"{self.seed}:records")
        keyed: list[tuple[float, bytes]] = []
        pos = 0
        for d, tabs in enumerate(self.landed):
            for t in sorted(tabs):
                rec = self.signal(t, d)
                # Shuffled within a window of about a day and a half.
                at = pos + rng.uniform(0, 1.5 * self.tables)
                keyed.append((at, rec))
                if rng.random() < self.dup_rate:
                    keyed.append((at + rng.uniform(1, self.tables), rec))
                if rng.random() < self.bad_rate:
                    keyed.append((at + 0.5, BAD_RECORDS[rng.randrange(len(BAD_RECORDS))]))
                pos += 1
        keyed.sort(key=lambda kv: kv[0])
        return [r for _, r in keyed]

    def expected(self) -> set[str]:
        out = set()
        for i, tabs in enumerate(self.specs):
            for d, landed in enumerate(self.landed):
                if all(t in landed for t in tabs):
                    out.add(command_id(self.trigger_id(i), {"dt": self.dt(d)}, 0))
        return out


BAD_RECORDS: tuple[bytes, ...] = (
    b"\xff\xfe not utf-8",
    b"{not json",
    b"[1, 2, 3]",
    b'{"name": "table_ready", "params": {"table": null}}',
    b'{"name": "table ready!", "params": {}}',
    b'{"name": "table_ready", "params": {"x": NaN}}',
)


def uniq_signal(n: int, *, name: str = "s", extra: dict[str, Any] | None = None) -> bytes:
    return json.dumps({"name": name, "params": {"n": n, **(extra or {})}}, separators=(",", ":")).encode()
