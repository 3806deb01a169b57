"""Shared by every test directory: puts tests/ on sys.path so helpers like `readme` import."""
