"""Benchmarks (`invoke bench.*`) and the load-test gate (`nox -s loadtest`), with their
synthetic feeds and steady traffic.

- bench_ingest.py: `invoke bench.ingest` (the ingest pipeline next to a raw COPY);
- bench_backup/: `invoke bench.backup` (pgBackRest backup and restore next to a raw copy);
- bench_deploy.py: `invoke bench.deploy` (deploy and rollback under traffic, in a sandbox);
- loadtest/: the locust SLO gate (`python -m ops.perf.loadtest`);
- feeds.py: synthetic listing feeds; traffic.py: steady reads that record failures and versions.
"""
