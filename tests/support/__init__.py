"""Helpers shared by the tests (tests/ is on sys.path: `from support.recorder import Recorder`).
No test module imports from another test module (tests/unit/test_support.py checks it): what
two of them share lives here, or in a fixture of the right conftest.py.

- recorder: Recorder, the recording executor for unit tests of ops code.
- simhost: SimHost, a simulated deploy host (files, lock, images, containers) answering the
  deploy's commands, and FakeEngine, this machine's engine as a deploy sees it.
- shell: LocalShell, an executor that runs commands with bash here (the lock's protocol).
- waiting: wait_for / wait_for_async, a wait on a condition instead of a fixed sleep.
- docker: docker(), the one wrapper of the `docker` command line, and small helpers.
- tls: throwaway CAs and certificates.
- collector_host, monitor_tunnel: fake hosts for the unit tests of `invoke logs` and
  `invoke monitor`.
- dashboard_queries: the PromQL of the dashboards and consoles, for the static and live tests.
"""
