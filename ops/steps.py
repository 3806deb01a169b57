"""A flat list of named steps: pre-flight (no impact yet) then impacting, each timed.

Every step is announced in one line as it starts and its duration printed when it ends; a
summary table closes the run. On failure the runner names the step, the error and the state the
system was left in, then re-raises. Under GitHub Actions each step is a collapsible group.

Every operation has one shape (`Operation`): a state object whose methods are its steps, and
`steps()`, at the bottom of the class, the table of them in order:

    class Deploy(Operation):
        def check_config(self) -> str: ...
        def take_lock(self) -> str: ...

        def steps(self) -> list[Step]:
            return [
                preflight("check configuration and secrets", self.check_config),
                impacting("take the deploy lock", self.take_lock, "no lock was taken"),
            ]
"""

from __future__ import annotations

import os
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

PREFLIGHT = "pre-flight"
IMPACTING = "impacting"


@dataclass(frozen=True)
class Step:
    """One named step. `action` may return a short note ("skipped: present") for the summary."""

    name: str
    action: Callable[[], str | None]
    impacting: bool = False
    # What is true of the system if this step fails midway (printed after the error).
    on_failure: str = ""

    @property
    def phase(self) -> str:
        return IMPACTING if self.impacting else PREFLIGHT


def preflight(name: str, action: Callable[[], str | None]) -> Step:
    """A step that only reads (it runs in a dry run too): it changes no host, and leaves this
    machine's images, containers and files as they were."""
    return Step(name, action)


def impacting(name: str, action: Callable[[], str | None], on_failure: str = "") -> Step:
    """A step that changes something; `on_failure` says what is true if it fails midway."""
    return Step(name, action, impacting=True, on_failure=on_failure)


@dataclass
class Outcome:
    """What happened to one step."""

    step: Step
    status: str  # ok | skipped | failed | not run | planned (dry run)
    seconds: float = 0.0
    note: str = ""


@dataclass
class Report:
    """Outcomes of a run, in order."""

    title: str
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        return sum(o.seconds for o in self.outcomes)


# A step that found nothing to do says so in its note, which starts with one of these; the
# summary shows it as `skipped` (its time is what finding that out took).
SKIPPED_NOTES = ("skipped", "unchanged, skipped")
RAN = ("ok", "skipped", "failed")


def skipped(note: str) -> bool:
    return note.startswith(SKIPPED_NOTES)


def format_duration(seconds: float) -> str:
    """0.4s, 12.3s, 2m05s."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def in_github_actions() -> bool:
    """True when running as a GitHub Actions step (enables ::group:: markers)."""
    return os.environ.get("GITHUB_ACTIONS") == "true"


class Runner:
    """Runs steps in order: pre-flight ones must come before impacting ones."""

    def __init__(
        self,
        title: str,
        out: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        groups: bool | None = None,
    ) -> None:
        self.title = title
        self.out = out if out is not None else sys.stdout
        self.clock = clock
        self.groups = in_github_actions() if groups is None else groups

    def _print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def run(self, steps: Sequence[Step], dry_run: bool = False) -> Report:
        """Run every step; on the first failure print where and what, then re-raise.

        With dry_run only the pre-flight steps run; impacting ones are listed as planned.
        """
        seen_impacting = False
        for step in steps:
            if seen_impacting and not step.impacting:
                raise ValueError(f"pre-flight step {step.name!r} comes after an impacting step")
            seen_impacting = seen_impacting or step.impacting
        report = Report(self.title, [Outcome(step, "not run") for step in steps])
        total = len(steps)
        self._print(f"==> {self.title}: {total} steps")
        for index, outcome in enumerate(report.outcomes, start=1):
            step = outcome.step
            if dry_run and step.impacting:
                outcome.status = "planned"
                continue
            header = f"[{index}/{total}] {step.phase}: {step.name}"
            if self.groups:
                self._print(f"::group::{header}")
            self._print(f"--> {header}")
            started = self.clock()
            try:
                note = step.action()
            except (Exception, KeyboardInterrupt) as exc:  # reported here, then re-raised
                outcome.seconds = self.clock() - started
                outcome.status = "failed"
                if self.groups:
                    self._print("::endgroup::")
                self._failure(report, outcome, exc)
                raise
            outcome.seconds = self.clock() - started
            outcome.note = note or ""
            outcome.status = "skipped" if skipped(outcome.note) else "ok"
            suffix = f" ({outcome.note})" if outcome.note else ""
            self._print(f"    done in {format_duration(outcome.seconds)}{suffix}")
            if self.groups:
                self._print("::endgroup::")
        self._summary(report)
        return report

    def _failure(self, report: Report, failed: Outcome, exc: BaseException) -> None:
        message = str(exc) or type(exc).__name__
        if self.groups:
            self._print(f"::error title=step failed: {failed.step.name}::{message}")
        self._print()
        self._print(f"FAILED at step '{failed.step.name}' after {format_duration(failed.seconds)}")
        self._print(f"  error: {message}")
        self._print(f"  state: {state_after(report, failed)}")
        self._summary(report)

    def _summary(self, report: Report) -> None:
        width = max([len(o.step.name) for o in report.outcomes] + [4])
        self._print()
        self._print(f"{'step':<{width}}  {'phase':<10}  {'result':<7}  {'time':>7}  note")
        for o in report.outcomes:
            time_text = format_duration(o.seconds) if o.status in RAN else "-"
            self._print(
                f"{o.step.name:<{width}}  {o.step.phase:<10}  {o.status:<7}  {time_text:>7}  "
                f"{o.note}".rstrip()
            )
        self._print(
            f"{'total':<{width}}  {'':<10}  {'':<7}  {format_duration(report.total_seconds):>7}"
        )


def state_after(report: Report, failed: Outcome) -> str:
    """One sentence on what the failed run changed."""
    done = [o.step.name for o in report.outcomes if o.status == "ok" and o.step.impacting]
    parts: list[str] = []
    if not failed.step.impacting and not done:
        parts.append("pre-flight only: nothing was changed")
    elif done:
        parts.append(f"completed impacting steps: {', '.join(done)}")
    else:
        parts.append("no impacting step had completed")
    if failed.step.on_failure:
        parts.append(failed.step.on_failure)
    return "; ".join(parts)


class Operation(ABC):
    """One operation: its state, its steps as methods, and `steps()`, the table of them.

    `run()` runs the table; `failed()` sees the error of a failed run before it propagates
    (an automatic rollback, diagnostics), and `close()` runs last whatever happened (locks,
    connections).
    """

    title = "operation"

    @abstractmethod
    def steps(self) -> list[Step]:
        """The steps in order: pre-flight ones, then impacting ones."""

    def failed(self, error: BaseException) -> None:  # noqa: B027  # optional hook
        """Called with the error of a failed run, before it propagates (may raise another)."""

    def close(self) -> None:  # noqa: B027  # optional hook
        """Called last, after success or failure."""

    def run(self, dry_run: bool = False, runner: Runner | None = None) -> Report:
        """Run the steps (only the pre-flight ones with dry_run)."""
        runner = runner or Runner(self.title)
        try:
            return runner.run(self.steps(), dry_run=dry_run)
        except (Exception, KeyboardInterrupt) as exc:
            self.failed(exc)
            raise
        finally:
            self.close()
