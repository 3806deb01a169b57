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
