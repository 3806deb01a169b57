"""The GitHub Actions workflows run only what a person runs, with the least they need.

Every command of every `run:` step is `invoke <task> [options]` with a task and options that exist
in tasks.py, `nox [-s <session>...] [-- args]` with sessions that exist in noxfile.py, or one of
the SETUP_LINES below. So CI and the local commands cannot drift apart: renaming a task, an
option or a session fails here until the workflows follow.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from command_check import invoke_problem, nox_problem, nox_sessions
from readme import readme_commands

from ops import secrets

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
WORKFLOW_DIR = ROOT / ".github" / "workflows"
WORKFLOW_FILES = sorted(WORKFLOW_DIR.glob("*.y*ml"))

# The only run lines that are neither invoke nor nox: they prepare the machine for those two.
SETUP_LINES = {
    # invoke and nox cannot install themselves: the README's install line, nothing more.
    "python3 -m pip install -e '.[dev]'",
    # Docker engine + compose plugin where they are missing (Debian, e.g. a self-hosted runner);
    # it does nothing on GitHub's ubuntu runners, which have both. Same first step as .ci/run.
    "scripts/install-docker",
}

# Write permissions a workflow may hold, each with its reason. None is needed today: artifacts
# of the same run need no token scope, and deploys reach the hosts over SSH, not GitHub.
JUSTIFIED_WRITES: dict[tuple[str, str], str] = {}

# What a deploy or rollback step needs in its environment (GitHub environment secrets).
DEPLOY_SECRETS = {
    "SLIPWAY_SSH_KEY",
    "SLIPWAY_SSH_KNOWN_HOSTS",
    "POSTGRES_PASSWORD",
    "REDIS_PASSWORD",
    "LISTINGS_API_KEY_PEPPER",
    "BACKUP_PASSPHRASE",
}

EXPRESSION = re.compile(r"\$\{\{.*?\}\}", re.DOTALL)
CONTROL_OPERATORS = {"&&", "||", ";", "|", "&"}
SHELL_PUNCTUATION = set("();<>|&")
UNSAFE_IN_RUN = re.compile(r"\$\{\{[^}]*?\b(secrets|inputs|github\.event|github\.head_ref)\b")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>[^\s#]+)(?P<rest>.*)$")
PINNED_REF = re.compile(r"^(?P<action>[\w.-]+/[\w./-]+)@(?P<sha>[0-9a-f]{40})$")
VERSION_COMMENT = re.compile(r"^\s+#\s*(?P<version>v\d+\.\d+\.\d+)\s*$")


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name}: not a mapping"
    return data


WORKFLOWS = {path.name: _load(path) for path in WORKFLOW_FILES}


def _triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    """The `on:` mapping (YAML 1.1 reads the bare key `on` as True)."""
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    assert isinstance(on, dict), "`on:` missing"
    return on


def _jobs(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    jobs = workflow.get("jobs")
    assert isinstance(jobs, dict) and jobs, "no jobs"
    return jobs


def _plain(expression_text: str) -> str:
    """`${{ a.b }}` and `${{a.b}}` compare equal."""
    return EXPRESSION.sub(lambda m: re.sub(r"\s+", "", m.group(0)), expression_text)


# --- splitting run steps into commands ----------------------------------------------------------


class RunLineError(ValueError):
    """A run line the checker refuses before looking at the command itself."""


def split_commands(run: str) -> list[list[str]]:
    """argv of every command of a `run:` block: lines, `\\` continuations, `&&`, `||`, `;`, `|`.

    `${{ ... }}` expressions become one word each (GitHub substitutes them before the shell runs).
    Redirections, subshells and command substitution raise RunLineError: a command a person types
    to run a task needs none of them.
    """
    text = re.sub(r"\\\r?\n", " ", run)
    found: list[list[str]] = []
    for raw in text.splitlines():
        line = EXPRESSION.sub(lambda m: re.sub(r"[\s'\"]", "", m.group(0)), raw).strip()
        if not line or line.startswith("#"):
            continue
        if "`" in line or "$(" in line:
            raise RunLineError(f"command substitution in {raw.strip()!r}")
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        current: list[str] = []
        for token in lexer:
            if token in CONTROL_OPERATORS:
                if current:
                    found.append(current)
                current = []
            elif set(token) <= SHELL_PUNCTUATION:
                raise RunLineError(f"shell operator {token!r} in {raw.strip()!r}")
            else:
                current.append(token)
        if current:
            found.append(current)
    return found


def command_problem(argv: list[str]) -> str | None:
    """Why this command may not appear in a workflow, or None when it may."""
    if argv in [shlex.split(line) for line in SETUP_LINES]:
        return None
    if argv[0] == "invoke":
        if len(argv) == 1 or argv[1].startswith("-"):
            return "invoke without a task first (core flags like --echo belong in invoke.yaml)"
        return invoke_problem(argv[1:])
    if argv[0] == "nox":
        return nox_problem(argv[1:], only_sessions=True)
    return f"{argv[0]!r} is neither invoke, nox nor one of the setup lines in SETUP_LINES"


# --- the commands of the real workflows ---------------------------------------------------------


@dataclass(frozen=True)
class RunStep:
    workflow: str
    job: str
    index: int
    step: dict[str, Any]

    @property
    def where(self) -> str:
        return f"{self.workflow} jobs.{self.job} step {self.index + 1}"


def run_steps() -> Iterator[RunStep]:
    for name, workflow in WORKFLOWS.items():
        for job_id, job in _jobs(workflow).items():
            for index, step in enumerate(job.get("steps") or []):
                if "run" in step:
                    yield RunStep(name, job_id, index, step)


def _command_cases() -> list[Any]:
    cases = []
    for run in run_steps():
        try:
            commands = split_commands(str(run.step["run"]))
        except RunLineError as err:
            cases.append(pytest.param(run.where, None, str(err), id=f"{run.where}: {err}"))
            continue
        for argv in commands:
            line = " ".join(argv)
            cases.append(pytest.param(run.where, argv, None, id=f"{run.where}: {line}"))
    return cases


@pytest.mark.parametrize(("where", "argv", "refused"), _command_cases())
def test_every_run_command_is_an_existing_task_a_nox_session_or_a_setup_line(
    where: str, argv: list[str] | None, refused: str | None
) -> None:
    assert argv is not None, f"{where}: {refused}"
    problem = command_problem(argv)
    assert problem is None, f"{where}: `{' '.join(argv)}`: {problem}"


def test_the_setup_install_line_is_the_readmes() -> None:
    (install,) = [line for line in SETUP_LINES if "pip install" in line]
    assert any(command.startswith(f"{install} && ") for command in readme_commands())


@pytest.mark.parametrize("run", list(run_steps()), ids=lambda run: run.where)
def test_no_run_text_holds_a_secret_or_an_input(run: RunStep) -> None:
    """Secrets and user-typed text reach the shell as variables from `env:`, never as text."""
    hit = UNSAFE_IN_RUN.search(str(run.step["run"]))
    assert hit is None, f"{run.where}: {hit.group(0) if hit else ''}... in run: pass it via env:"


# --- the checker itself -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("run", "commands"),
    [
        ("invoke up", [["invoke", "up"]]),
        ("invoke build \\\n  --force\n", [["invoke", "build", "--force"]]),
        ("invoke build && nox -s lint; nox", [["invoke", "build"], ["nox", "-s", "lint"], ["nox"]]),
        ("# a comment\n\ninvoke status", [["invoke", "status"]]),
        ("invoke up --env=${{ inputs.env }}", [["invoke", "up", "--env=${{inputs.env}}"]]),
        (
            "python3 -m pip install -e '.[dev]'",
            [["python3", "-m", "pip", "install", "-e", ".[dev]"]],
        ),
        ("invoke status | tee out", [["invoke", "status"], ["tee", "out"]]),
    ],
    ids=[
        "one command is one argv",
        "a continued line is one command",
        "and-lists and semicolons are split",
        "comments and blank lines are skipped",
        "an expression stays one word",
        "quotes are removed like the shell does",
        "each side of a pipe is a command",
    ],
)
def test_run_blocks_split_into_the_commands_the_shell_runs(
    run: str, commands: list[list[str]]
) -> None:
    assert split_commands(run) == commands


@pytest.mark.parametrize(
    "run",
    ["invoke status > status.txt", "echo $(git describe)", "echo `date`", "(invoke up)"],
    ids=["redirection", "command substitution", "backticks", "subshell"],
)
def test_shell_plumbing_is_refused(run: str) -> None:
    with pytest.raises(RunLineError):
        split_commands(run)


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        ("invoke no-such-task", "no invoke task 'no-such-task'"),
        ("invoke up --no-such-option", "No idea what '--no-such-option' is"),
        ("invoke up --env", "needed value"),
        ("invoke --echo up", "core flags"),
        ("nox -s no-such-session", "no nox session 'no-such-session'"),
        ("nox -R -s lint", "only `nox [-s <session>...] [-- args]`"),
        ("curl -fsS https://example.org/install.sh", "neither invoke, nox nor"),
        ("python3 -m pip install requests", "neither invoke, nox nor"),
    ],
    ids=[
        "an unknown task",
        "an unknown option",
        "an option without its value",
        "invoke core flags",
        "an unknown nox session",
        "other nox flags",
        "any other program",
        "another pip install",
    ],
)
def test_commands_that_drift_are_refused(command: str, problem: str) -> None:
    (argv,) = split_commands(command)
    found = command_problem(argv)
    assert found is not None and problem in found, found


@pytest.mark.parametrize(
    "command",
    [
        "invoke up --env=staging --dry-run",
        "invoke build --service=api --service nginx",
        "invoke images.base up",
        "nox",
        "nox -s lint tests -- -m unit",
        "nox --session=scan",
        "scripts/install-docker",
    ],
)
def test_commands_of_existing_tasks_and_sessions_pass(command: str) -> None:
    (argv,) = split_commands(command)
    assert command_problem(argv) is None


def test_a_session_name_comes_from_the_decorator_when_given(tmp_path: Path) -> None:
    noxfile = tmp_path / "noxfile.py"
    noxfile.write_text(
        "import nox\n"
        "@nox.session\ndef lint(session): ...\n"
        "@nox.session(default=False, name='load-test')\ndef loadtest(session): ...\n"
        "def helper(): ...\n"
    )
    assert nox_sessions(noxfile) == {"lint", "load-test"}


# --- least privilege, pinned actions, explicit secrets ------------------------------------------


@pytest.mark.parametrize("name", WORKFLOWS)
def test_permissions_are_read_only_unless_justified(name: str) -> None:
    workflow = WORKFLOWS[name]
    scopes = workflow.get("permissions")
    assert isinstance(scopes, dict), f"{name}: top-level `permissions:` must list scopes"
    assert scopes.get("contents") == "read", f"{name}: contents: read"
    granted = [("top level", scopes)]
    granted += [
        (f"jobs.{j}", job["permissions"])
        for j, job in _jobs(workflow).items()
        if "permissions" in job
    ]
    for where, grant in granted:
        assert isinstance(grant, dict), f"{name} {where}: permissions must list scopes"
        for scope, level in grant.items():
            if level not in {"read", "none"}:
                assert (name, scope) in JUSTIFIED_WRITES, f"{name} {where}: {scope}: {level}"


def _uses_lines(path: Path) -> list[tuple[int, str, str]]:
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = USES_LINE.match(line)
        if match:
            found.append((number, match.group("ref"), match.group("rest")))
    return found


def _parsed_uses(workflow: dict[str, Any]) -> set[str]:
    found = set()
    for job in _jobs(workflow).values():
        if "uses" in job:
            found.add(str(job["uses"]))
        found.update(str(step["uses"]) for step in job.get("steps") or [] if "uses" in step)
    return found


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda path: path.name)
def test_every_action_is_pinned_to_a_commit_sha_with_its_version(path: Path) -> None:
    lines = _uses_lines(path)
    assert {ref for _, ref, _ in lines} == _parsed_uses(WORKFLOWS[path.name]), (
        f"{path.name}: write every `uses:` on its own line, `uses: owner/repo@<sha> # vX.Y.Z`"
    )
    for number, ref, rest in lines:
        if ref.startswith("./"):
            continue  # a workflow of this repository, at this very commit
        assert PINNED_REF.match(ref), f"{path.name}:{number}: {ref} is not pinned to a commit SHA"
        assert VERSION_COMMENT.match(rest), f"{path.name}:{number}: add `# vX.Y.Z` after the SHA"


def test_an_action_is_pinned_to_one_sha_everywhere() -> None:
    pins: dict[str, set[str]] = {}
    for path in WORKFLOW_FILES:
        for _, ref, rest in _uses_lines(path):
            match = PINNED_REF.match(ref)
            if match:
                pins.setdefault(match.group("action"), set()).add(f"{match.group('sha')}{rest}")
    assert pins
    assert {action: shas for action, shas in pins.items() if len(shas) > 1} == {}


def _strings(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, (*path, index))
    elif isinstance(node, str):
        yield path, node


@pytest.mark.parametrize("name", WORKFLOWS)
def test_secrets_are_passed_only_as_step_env_under_their_own_name(name: str) -> None:
    workflow = WORKFLOWS[name]
    for job_id, job in _jobs(workflow).items():
        assert job.get("secrets") != "inherit", f"{name} jobs.{job_id}: secrets: inherit"
    for path, text in _strings(workflow):
        if "secrets" not in text or "${{" not in text:
            continue
        where = ".".join(map(str, path))
        is_step_env = len(path) == 6 and path[0] == "jobs" and path[2:5:2] == ("steps", "env")
        assert is_step_env, f"{name} {where}: secrets only in a step's env:"
        assert _plain(text) == f"${{{{secrets.{path[5]}}}}}", f"{name} {where}: {text}"


@pytest.mark.parametrize("name", WORKFLOWS)
def test_every_job_has_a_timeout_and_no_checkout_keeps_the_token(name: str) -> None:
    for job_id, job in _jobs(WORKFLOWS[name]).items():
        if "uses" in job:
            continue  # a reusable workflow: its jobs carry their own timeouts
        assert isinstance(job.get("timeout-minutes"), int), f"{name} jobs.{job_id}: timeout"
        for step in job.get("steps") or []:
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert (step.get("with") or {}).get("persist-credentials") is False, (
                    f"{name} jobs.{job_id}: checkout with `persist-credentials: false`"
                )


# --- deploys --------------------------------------------------------------------------------------


def _environment(job: dict[str, Any]) -> str | None:
    environment = job.get("environment")
    if isinstance(environment, dict):
        environment = environment.get("name")
    return None if environment is None else _plain(str(environment))


def _commands(job: dict[str, Any]) -> list[tuple[int, dict[str, Any], list[str]]]:
    found = []
    for index, step in enumerate(job.get("steps") or []):
        if "run" in step:
            found += [(index, step, argv) for argv in split_commands(str(step["run"]))]
    return found


def _option(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith(f"{name}="):
            return arg.partition("=")[2]
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _resolve(value: str | None, step: dict[str, Any], job: dict[str, Any]) -> str | None:
    """A `$VAR` argument's value from the step's or the job's env (what the shell will see)."""
    if value is None or not value.startswith("$"):
        return value
    variable = value.lstrip("$").strip("{}")
    for env in (step.get("env") or {}, job.get("env") or {}):
        if variable in env:
            return _plain(str(env[variable]))
    return value


def _one(job: dict[str, Any], *prefix: str) -> tuple[int, dict[str, Any], list[str]]:
    matches = [found for found in _commands(job) if found[2][: len(prefix)] == list(prefix)]
    assert len(matches) == 1, f"expected one `{' '.join(prefix)}`, found {len(matches)}"
    return matches[0]


def _deploy_jobs() -> list[tuple[str, str, dict[str, Any]]]:
    """Jobs that change what an environment runs: they deploy or roll back."""
    return [
        (name, job_id, job)
        for name, workflow in WORKFLOWS.items()
        for job_id, job in _jobs(workflow).items()
        if _environment(job)
        and any(
            argv[:2] in (["invoke", "deploy"], ["invoke", "rollback"])
            for *_, argv in _commands(job)
        )
    ]


@pytest.mark.parametrize(
    ("name", "job_id", "job"),
    _deploy_jobs(),
    ids=[f"{name} jobs.{job_id}" for name, job_id, _ in _deploy_jobs()],
)
def test_a_job_that_deploys_queues_per_environment_and_is_never_cancelled(
    name: str, job_id: str, job: dict[str, Any]
) -> None:
    concurrency = job.get("concurrency")
    assert isinstance(concurrency, dict), f"{name} jobs.{job_id}: concurrency"
    group = f"deploy-{_environment(job)}"  # the same group in deploy.yml and rollback.yml
    assert _plain(str(concurrency.get("group"))) == group, f"{name} jobs.{job_id}: {group}"
    assert concurrency.get("cancel-in-progress") is False, f"{name} jobs.{job_id}: never cancel"
    top = WORKFLOWS[name].get("concurrency")
    assert not isinstance(top, dict) or top.get("cancel-in-progress") is not True, name


def test_deploy_runs_on_pushes_to_main_only() -> None:
    assert _triggers(WORKFLOWS["deploy.yml"]) == {"push": {"branches": ["main"]}}


def test_ci_gates_every_deploy_and_inherits_no_secrets() -> None:
    jobs = _jobs(WORKFLOWS["deploy.yml"])
    assert jobs["ci"]["uses"] == "./.github/workflows/ci.yml"
    assert "workflow_call" in _triggers(WORKFLOWS["ci.yml"])
    assert "ci" in jobs["staging"]["needs"]


def test_the_images_are_built_once_saved_and_uploaded() -> None:
    build = _jobs(WORKFLOWS["deploy.yml"])["build"]
    assert _plain(build["outputs"]["version"]) == "${{steps.version.outputs.version}}"
    version_step = next(s for s in build["steps"] if s.get("id") == "version")
    assert split_commands(version_step["run"])[0][:2] == ["invoke", "version"]
    version = "${{steps.version.outputs.version}}"
    _, step, _ = _one(build, "invoke", "build")
    assert _plain(step["env"]["SLIPWAY_VERSION"]) == version, "build the version it outputs"
    _, step, save = _one(build, "invoke", "images.save")
    assert _resolve(_option(save, "--version"), step, build) == version
    upload = next(s for s in build["steps"] if str(s.get("uses", "")).startswith("actions/upload"))
    assert upload["with"]["name"] == "images"


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_each_environment_deploys_the_same_saved_images(environment: str) -> None:
    job = _jobs(WORKFLOWS["deploy.yml"])[environment]
    assert _environment(job) == environment
    assert "build" in job["needs"]
    downloads = [
        i
        for i, s in enumerate(job["steps"])
        if str(s.get("uses", "")).startswith("actions/download")
    ]
    assert len(downloads) == 1 and job["steps"][downloads[0]]["with"]["name"] == "images"
    load_at, _, _ = _one(job, "invoke", "images.load")
    deploy_at, step, deploy = _one(job, "invoke", "deploy")
    assert downloads[0] < load_at < deploy_at
    assert _option(deploy, "--env") == environment
    version = _resolve(_option(deploy, "--version"), step, job)
    assert version == "${{needs.build.outputs.version}}", f"{environment}: --version={version}"
    assert set(step.get("env") or {}) >= DEPLOY_SECRETS, f"{environment}: deploy secrets"


def test_staging_passes_a_smoke_load_test_before_production_may_start() -> None:
    jobs = _jobs(WORKFLOWS["deploy.yml"])
    deploy_at, _, _ = _one(jobs["staging"], "invoke", "deploy")
    smoke_at, _, smoke = _one(jobs["staging"], "nox", "-s", "loadtest")
    assert smoke_at > deploy_at
    assert smoke[3:] == ["--", "--env=staging", "--profile=smoke"]
    assert "staging" in jobs["production"]["needs"]
    assert jobs["production"]["environment"] == "production"


def test_rollback_is_manual_with_an_environment_and_a_release() -> None:
    workflow = WORKFLOWS["rollback.yml"]
    triggers = _triggers(workflow)
    assert list(triggers) == ["workflow_dispatch"]
    inputs = triggers["workflow_dispatch"]["inputs"]
    assert set(inputs) == {"environment", "release"}
    assert inputs["environment"]["required"] is True
    assert inputs["environment"]["type"] == "choice"
    # An empty release is `invoke rollback`'s default: the previous successful release.
    assert inputs["release"]["type"] == "string"
    deployed = {_environment(job) for _, _, job in _deploy_jobs()}
    assert set(inputs["environment"]["options"]) <= deployed
    (job,) = _jobs(workflow).values()
    assert _environment(job) == "${{inputs.environment}}"
    _, step, rollback = _one(job, "invoke", "rollback")
    assert _resolve(_option(rollback, "--env"), step, job) == "${{inputs.environment}}"
    assert _resolve(_option(rollback, "--to"), step, job) == "${{inputs.release}}"
    assert set(step.get("env") or {}) >= DEPLOY_SECRETS


def test_deploy_secrets_cover_every_required_release_secret() -> None:
    """A secret ops/secrets.py requires but the workflows do not pass stops every CI deploy."""
    assert set(secrets.REQUIRED) <= DEPLOY_SECRETS


DRILL_EXPRESSION = (
    "${{ inputs.environment || (github.event.schedule == '30 4 * * 0' && 'production' || "
    "'staging') }}"
)
DRILL_TARGET = _plain(DRILL_EXPRESSION)


def test_drills_run_nightly_on_staging_weekly_on_production_and_by_hand() -> None:
    workflow = WORKFLOWS["drill.yml"]
    triggers = _triggers(workflow)
    crons = [entry["cron"] for entry in triggers["schedule"]]
    # Staging daily after its 02:00 backup; production Sundays, after the weekly full.
    assert crons == ["30 3 * * *", "30 4 * * 0"]
    inputs = triggers["workflow_dispatch"]["inputs"]
    deployed = {_environment(job) for _, _, job in _deploy_jobs()}
    assert set(inputs["environment"]["options"]) == {"staging", "production"}
    assert {"staging", "production"} <= deployed
    (job,) = _jobs(workflow).values()
    # The production cron, and only it, picks production (the expression names it exactly).
    assert _plain(str(job["env"]["TARGET_ENV"])) == DRILL_TARGET
    assert f"'{crons[1]}'" in DRILL_EXPRESSION and crons[0] not in DRILL_EXPRESSION
    assert (WORKFLOW_DIR / "drill.yml").read_text().count(DRILL_EXPRESSION) == 4
    _, step, drill = _one(job, "invoke", "backup.drill")
    assert _resolve(_option(drill, "--env"), step, job) == DRILL_TARGET
    assert _resolve(_option(drill, "--at"), step, job) == "${{inputs.at}}"
    assert set(step["env"]) == {"SLIPWAY_SSH_KEY", "SLIPWAY_SSH_KNOWN_HOSTS"}
    # Not a deploy: its own environment (no reviewer to wait for) and concurrency group (a
    # queued drill in a deploy group would cancel the deploy waiting there).
    assert _environment(job) == DRILL_TARGET + "-backups"
    assert _plain(str(job["concurrency"]["group"])) == "drill-" + DRILL_TARGET
    assert job["concurrency"]["cancel-in-progress"] is False
    assert job not in [found for *_, found in _deploy_jobs()]
    _one(job, "invoke", "backup.list")
