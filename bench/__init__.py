"""The benchmark harness: ``python -m bench`` (see docs/benchmarks.md).

The generator is the one piece other code may want (tests, ad-hoc experiments): a
deterministic warehouse workload that knows the exact set of commands it must cause.
"""

from .workload import Record, TriggerSpec, Workload, WorkloadConfig, landed_of

__all__ = ["Record", "TriggerSpec", "Workload", "WorkloadConfig", "landed_of"]
