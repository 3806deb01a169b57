"""Helpers shared by the tests (tests/ is on sys.path: `from support.recorder import Recorder`).
No test module imports from another test module: what two of them share lives here."""
