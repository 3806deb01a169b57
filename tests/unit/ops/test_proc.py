"""ops.proc: a tool that is not installed is named with what it was needed for, never a
traceback, whether its output is captured or streamed."""

from __future__ import annotations

import sys

import pytest

from ops import proc
from ops.errors import OpsError

pytestmark = pytest.mark.unit

MISSING = "slipway-no-such-tool-7f3e"


def test_run_names_a_missing_tool_and_what_it_was_for() -> None:
    with pytest.raises(OpsError) as err:
        proc.run([MISSING, "--version"], capture=True, what="check the tool")
    assert str(err.value) == f"{MISSING} is not installed or not on PATH (check the tool)"


def test_tee_names_a_missing_tool_too() -> None:
    with pytest.raises(OpsError) as err:
        proc.tee([MISSING], what="stream the tool")
    assert str(err.value) == f"{MISSING} is not installed or not on PATH (stream the tool)"


def test_tee_streams_and_returns_the_output_and_exit_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, output = proc.tee(
        [sys.executable, "-c", "import sys; print(sys.stdin.read().upper()); sys.exit(3)"],
        stdin="fed\n",
    )
    assert code == 3
    assert output == "FED\n\n"
    assert "FED" in capsys.readouterr().out


def test_a_command_past_its_timeout_is_stopped_and_named() -> None:
    with pytest.raises(OpsError, match=r"^sleeping did not finish within 0.2s and was stopped: "):
        proc.run(["sleep", "5"], quiet=True, what="sleeping", timeout=0.2, check=False)


def test_a_quiet_captured_run_prints_nothing_and_returns_what_the_command_printed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    script = "import sys; print(sys.stdin.read().upper()); print('warn', file=sys.stderr)"
    result = proc.run(
        [sys.executable, "-c", script], capture=True, quiet=True, stdin="fed", timeout=30
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "FED\n", "warn\n")
    assert capsys.readouterr() == ("", "")


def test_a_run_is_echoed_unless_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    proc.run([sys.executable, "-c", "pass"], timeout=30)
    assert capsys.readouterr().out.startswith(f"$ {sys.executable} -c pass")


def test_a_failure_names_the_command_and_its_captured_error() -> None:
    script = "import sys; sys.exit('no such table')"
    with pytest.raises(OpsError, match=r"^query failed \(exit 1\): .* -c .*: no such table$"):
        proc.run([sys.executable, "-c", script], capture=True, quiet=True, what="query")
