"""The step runner: one line per step as it starts, durations, summary, failure report."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from ops.errors import OpsError
from ops.steps import Operation, Runner, Step, format_duration, impacting, preflight

pytestmark = pytest.mark.unit


def _clock(ticks: list[float]) -> Iterator[float]:
    yield from ticks


def _runner(out: io.StringIO, ticks: list[float], groups: bool = False) -> Runner:
    it = _clock(ticks)
    return Runner("up local", out=out, clock=lambda: next(it), groups=groups)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.04, "0.0s"), (1.26, "1.3s"), (59.9, "59.9s"), (125, "2m05s")]
)
def test_durations_are_short_and_readable(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_each_step_is_announced_timed_and_summarized() -> None:
    out = io.StringIO()
    steps = [
        Step("check docker", lambda: "engine 20.10"),
        Step("build images", lambda: None, impacting=True),
    ]
    report = _runner(out, [0.0, 0.5, 10.0, 72.25]).run(steps)
    lines = out.getvalue().splitlines()
    assert lines[0] == "==> up local: 2 steps"
    assert lines[1] == "--> [1/2] pre-flight: check docker"
    assert lines[2] == "    done in 0.5s (engine 20.10)"
    assert lines[3] == "--> [2/2] impacting: build images"
    assert lines[4] == "    done in 1m02s"
    table = lines[6:]
    assert table[0].split() == ["step", "phase", "result", "time", "note"]
    assert table[1].split() == ["check", "docker", "pre-flight", "ok", "0.5s", "engine", "20.10"]
    assert table[2].split() == ["build", "images", "impacting", "ok", "1m02s"]
    assert table[3].split() == ["total", "1m03s"]
    assert [o.status for o in report.outcomes] == ["ok", "ok"]


def _boom() -> str:
    raise OpsError("compose build failed (exit 1)")


def test_a_failure_names_the_step_the_error_and_the_state_left() -> None:
    out = io.StringIO()
    steps = [
        Step("check docker", lambda: None),
        Step("start postgres", lambda: None, impacting=True),
        Step("migrate", _boom, impacting=True, on_failure="schema unchanged"),
        Step("start api", lambda: None, impacting=True),
    ]
    with pytest.raises(OpsError):
        _runner(out, [0, 1, 1, 3, 3, 4]).run(steps)
    text = out.getvalue()
    assert "FAILED at step 'migrate' after 1.0s" in text
    assert "  error: compose build failed (exit 1)" in text
    assert "  state: completed impacting steps: start postgres; schema unchanged" in text
    assert "start api" in text.split("FAILED")[1]  # listed in the summary as not run
    summary_api = [line for line in text.splitlines() if line.startswith("start api")][-1]
    assert summary_api.split()[2:] == ["impacting", "not", "run", "-"]


def test_a_preflight_failure_says_nothing_was_changed() -> None:
    out = io.StringIO()
    with pytest.raises(OpsError):
        _runner(out, [0, 1]).run([Step("check config", _boom), Step("act", lambda: None, True)])
    assert "state: pre-flight only: nothing was changed" in out.getvalue()


def test_github_actions_gets_groups_and_an_error_annotation() -> None:
    out = io.StringIO()
    with pytest.raises(OpsError):
        _runner(out, [0, 1, 1, 2], groups=True).run(
            [Step("ok step", lambda: None), Step("bad step", _boom, impacting=True)]
        )
    lines = out.getvalue().splitlines()
    assert lines[1] == "::group::[1/2] pre-flight: ok step"
    assert lines.count("::endgroup::") == 2
    assert any(line.startswith("::error title=step failed: bad step::") for line in lines)


def test_groups_follow_the_github_actions_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert Runner("x").groups is True
    monkeypatch.delenv("GITHUB_ACTIONS")
    assert Runner("x").groups is False


def test_preflight_steps_cannot_follow_impacting_ones() -> None:
    with pytest.raises(ValueError, match="comes after an impacting step"):
        Runner("x", out=io.StringIO()).run(
            [Step("act", lambda: None, impacting=True), Step("check", lambda: None)]
        )


def test_dry_run_runs_only_preflight_and_lists_the_rest_as_planned() -> None:
    out = io.StringIO()
    ran: list[str] = []
    steps = [
        Step("check", lambda: ran.append("check") and None),
        Step("act", lambda: ran.append("act") and None, impacting=True),
    ]
    report = _runner(out, [0.0, 0.2]).run(steps, dry_run=True)
    assert ran == ["check"]
    assert [o.status for o in report.outcomes] == ["ok", "planned"]
    act_line = next(line for line in out.getvalue().splitlines() if line.startswith("act "))
    assert act_line.split() == ["act", "impacting", "planned", "-"]


class Recorded(Operation):
    """An operation that records what its hooks saw."""

    title = "recorded"

    def __init__(self, fail_at: str = "") -> None:
        self.fail_at = fail_at
        self.events: list[str] = []

    def look(self) -> str:
        self.events.append("look")
        return "seen"

    def act(self) -> str:
        self.events.append("act")
        if self.fail_at == "act":
            raise OpsError("act broke")
        return "done"

    def failed(self, error: BaseException) -> None:
        self.events.append(f"failed: {error}")

    def close(self) -> None:
        self.events.append("close")

    def steps(self) -> list[Step]:
        return [preflight("look", self.look), impacting("act", self.act, "half acted")]


def test_an_operation_runs_its_table_then_closes() -> None:
    op = Recorded()
    report = op.run(runner=Runner("t", out=io.StringIO()))
    assert [o.status for o in report.outcomes] == ["ok", "ok"]
    assert op.events == ["look", "act", "close"]


def test_a_dry_run_of_an_operation_runs_only_its_preflight_steps() -> None:
    op = Recorded()
    report = op.run(dry_run=True, runner=Runner("t", out=io.StringIO()))
    assert [o.status for o in report.outcomes] == ["ok", "planned"]
    assert op.events == ["look", "close"]


def test_a_failed_operation_sees_its_error_then_closes_and_reraises() -> None:
    op = Recorded(fail_at="act")
    out = io.StringIO()
    with pytest.raises(OpsError, match="act broke"):
        op.run(runner=Runner("t", out=out))
    assert op.events == ["look", "act", "failed: act broke", "close"]
    assert "state: no impacting step had completed; half acted" in out.getvalue()
