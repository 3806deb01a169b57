"""Benchmarks (`invoke bench.*`) and the load-test gate (`nox -s loadtest`), with their
synthetic feeds and steady traffic.
"""
