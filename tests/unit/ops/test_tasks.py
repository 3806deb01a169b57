"""Task behaviour that must hold without Docker: destructive commands ask first."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from invoke.context import Context
from invoke.exceptions import Exit
from ops_testdata import LOCAL_YAML

from ops.errors import OpsError
from ops.stack import local as stack
from ops.tasks import stack as stack_tasks
from ops.tasks._common import exits

pytestmark = pytest.mark.unit

WriteEnv = Callable[[str, str], Path]


@pytest.fixture
def no_docker(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record any attempt to reach compose or the engine instead of making it."""
    calls: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        calls.append("open_stack")
        raise AssertionError("docker must not be touched")

    monkeypatch.setattr(stack, "open_stack", refuse)
    return calls


def test_down_volumes_refuses_without_yes_when_not_interactive(
    write_env: WriteEnv, no_docker: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_env("local", LOCAL_YAML)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(Exit) as err:
        stack_tasks.down(Context(), env="local", volumes=True, yes=False)
    assert err.value.code == 1
    assert "refusing to delete all data of slipway-local" in str(err.value.message)
    assert "--yes" in str(err.value.message)
    assert no_docker == []


def test_interactive_confirmation_requires_typing_yes() -> None:
    with pytest.raises(OpsError, match="not confirmed"):
        stack.confirm_destroy("the data", yes=False, interactive=True, ask=lambda _: "y")
    stack.confirm_destroy("the data", yes=False, interactive=True, ask=lambda _: "yes")


def test_yes_skips_the_question() -> None:
    def never(_: str) -> str:
        raise AssertionError("asked")

    stack.confirm_destroy("the data", yes=True, interactive=False, ask=never)


def test_unknown_environment_becomes_an_exit_with_the_message(write_env: WriteEnv) -> None:
    write_env("local", LOCAL_YAML)
    with pytest.raises(Exit) as err:
        stack_tasks.status(Context(), env="nope")
    assert err.value.code == 1
    assert "unknown environment 'nope'" in str(err.value.message)
    assert "Available: local" in str(err.value.message)


def test_every_task_has_a_docstring_and_help_for_every_argument() -> None:
    from invoke.collection import Collection
    from invoke.tasks import Task

    import tasks as root

    def walk(coll: Collection) -> list[Task[..., object]]:
        found = list(coll.tasks.values())
        for sub in coll.collections.values():
            found += walk(sub)
        return found

    for task in walk(root.ns):
        assert task.__doc__ and task.__doc__.strip().count("\n") == 0, task.name
        params = [p for p in task.get_arguments()]
        for arg in params:
            assert arg.help, f"{task.name} --{arg.name} has no help"


def test_an_ops_error_ends_a_task_with_its_message_and_exit_1() -> None:
    with pytest.raises(Exit) as err, exits():
        raise OpsError("the host is locked. Fix: wait")
    assert err.value.code == 1
    assert err.value.message == "error: the host is locked. Fix: wait"


def test_any_other_exception_is_reported_as_a_bug_with_its_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def sequencing_bug() -> None:
        raise AssertionError("release planned before the lock")

    with pytest.raises(Exit) as err, exits():
        sequencing_bug()
    assert err.value.code == 70
    message = str(err.value.message)
    assert message.startswith("BUG: AssertionError: release planned before the lock.")
    assert "not in your input or environment" in message
    assert "deploy failed" not in message
    traceback_text = capsys.readouterr().err
    assert "Traceback (most recent call last)" in traceback_text
    assert "in sequencing_bug" in traceback_text
