"""`invoke bench.backup`: a pgBackRest full backup and a restore of a throwaway PostgreSQL, next to
a raw copy of the same data directory, measured in one run.

Not a test: it prints numbers and PASS/MISS against the targets (backup at least half as fast as
the raw copy; a restore of 1 GB in under a minute). Everything runs on containers and volumes of
its own, named slipway-bench-backup-<run>-*, made from the slipway/postgres image the stack runs
(built through compose when missing) and set up the way compose/compose.yaml sets up `postgres`
and `backup`: the image's entrypoint, the real pgBackRest settings (aes-256-cbc, lz4,
process-max), the backup in a second container over the shared socket with the data directory
read-only. They are removed at the end, also when a step fails, unless --keep.

The modules:

- measure.py: sizes, targets, and the parsing of what the tools print (pure);
- report.py: `Results` of a run and the closing table with PASS/MISS (pure);
- containers.py: the run's container names, the hardened `docker run`, the docker commands;
- operation.py: `BenchBackup`, the Operation whose steps run the benchmark, and `run()`.
"""

from __future__ import annotations

from ops.perf.bench_backup.measure import DEFAULT_SIZE
from ops.perf.bench_backup.operation import BenchBackup, Options, run
from ops.perf.bench_backup.report import Results

__all__ = ["DEFAULT_SIZE", "BenchBackup", "Options", "Results", "run"]
