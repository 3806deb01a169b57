"""Thin invoke task modules: parse arguments, call ops, turn OpsError into Exit."""
