"""Every `invoke` and `nox` command the docs show exists, with the options it is shown with.

The code blocks (```sh, ```bash, ```shell, ```console, ```text and unlabelled ones) of README.md
and docs/*.md are scanned. Every command in them that runs `invoke` or `nox` (a whole line, or
the part of one after `&&`, `||`, `;` or `|`; a `$ ` prompt and `NAME=value` prefixes are
stripped, `# comments` ignored) is parsed with invoke's own parser against the real task
collection (tasks.ns), and its `-s` sessions are looked up among the sessions noxfile.py
registers. Renaming a task, an option or a session fails here until the docs follow.

Only the README's ```sh blocks are also *run* (tests/e2e/test_readme_commands.py); everything
else is parsed only, so deploy and rollback commands can be shown without being run.

The checker (command_check.py) is the one test_workflows.py uses; the workflows add their own
stricter rules (no core flags, no nox options but -s) that docs need not follow (`invoke
--list`, placeholders such as `<release>`, a pipe into grep).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from command_check import every_task, invoke_problem, nox_problem

import tasks

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Languages of the fenced blocks that hold commands (yaml, json, python blocks do not).
COMMAND_BLOCKS = {"sh", "bash", "shell", "console", "text", ""}
# Tasks whose arguments may be given as bare words (`positional=[...]` in their @task).
PROGRAMS = {"invoke", "nox"}
CONTROL_OPERATORS = {"&&", "||", ";", "|", "&"}

FENCE = re.compile(r"^\s*(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# A line worth tokenising: invoke or nox at its start or right after a shell operator.
MENTION = re.compile(r"(?:^|&&|\|\||[;|])\s*(?:[A-Za-z_]\w*=\S*\s+)*(?:invoke|nox)(?:\s|$)")


@dataclass(frozen=True)
class DocCommand:
    path: str
    line: int
    argv: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.path} line {self.line}"

    @property
    def text(self) -> str:
        return " ".join(self.argv)


# --- finding the commands -------------------------------------------------------------------------


def code_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of every line inside a fenced block of COMMAND_BLOCKS."""
    fence = ""
    keep = False
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line)
        if not fence:
            if match:
                fence = match.group("fence")
                keep = match.group("lang").lower() in COMMAND_BLOCKS
            continue
        if match and match.group("fence").startswith(fence) and not match.group("lang"):
            fence = ""
            continue
        if keep:
            yield number, line


def commands_in(line: str) -> list[list[str]]:
    """argv of every invoke or nox command on one line of a code block."""
    text = line.strip()
    if text.startswith("$ "):
        text = text[2:].lstrip()
    if not MENTION.search(text):
        return []
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    words = list(lexer)  # ValueError on an unbalanced quote: a broken example is a failure
    found: list[list[str]] = []
    current: list[str] = []
    for word in [*words, ";"]:
        if word not in CONTROL_OPERATORS:
            current.append(word)
            continue
        while current and ASSIGNMENT.match(current[0]):
            current.pop(0)
        if current and current[0] in PROGRAMS:
            found.append(current)
        current = []
    return found


def doc_commands(path: Path, root: Path = ROOT) -> list[DocCommand]:
    shown = str(path.relative_to(root))
    found = []
    for number, line in code_lines(path.read_text(encoding="utf-8")):
        found += [DocCommand(shown, number, tuple(argv)) for argv in commands_in(line)]
    return found


def command_problem(argv: list[str] | tuple[str, ...]) -> str | None:
    program, *args = argv
    if program == "invoke":
        return invoke_problem(args)
    if program == "nox":
        return nox_problem(args)
    return f"{program!r} is neither invoke nor nox"


# --- the docs -----------------------------------------------------------------------------------


def _doc_cases() -> list[object]:
    cases: list[object] = []
    for path in DOCS:
        try:
            found = doc_commands(path)
        except ValueError as err:  # a line shlex cannot split
            shown = path.relative_to(ROOT)
            cases.append(pytest.param(None, id=f"{shown} cannot be read: {err}"))
            continue
        cases += [pytest.param(c, id=f"{c.where} shows {c.text}") for c in found]
    return cases


DOC_CASES = _doc_cases()


@pytest.mark.parametrize("command", DOC_CASES)
def test_every_invoke_and_nox_command_in_the_docs_names_what_exists(
    command: DocCommand | None,
) -> None:
    assert command is not None, "a code block line with invoke or nox could not be split"
    problem = command_problem(command.argv)
    assert problem is None, f"{command.where}: `{command.text}`: {problem}"


def test_checking_commands_leaves_the_tasks_help_as_it_was() -> None:
    before = [dict(task.help) for task in every_task(tasks.ns)]
    assert tasks.ns["deploy"].help["env"]
    assert command_problem(["invoke", "deploy", "--env=staging"]) is None
    assert [dict(task.help) for task in every_task(tasks.ns)] == before


def test_the_readme_and_the_runbook_show_deploys_and_rollbacks() -> None:
    """The scan finds the commands where they are written (a broken scan finds nothing)."""
    shown: dict[str, set[str]] = {}
    for path in (ROOT / "README.md", ROOT / "docs" / "runbook.md"):
        for command in doc_commands(path):
            shown.setdefault(command.path, set()).add(" ".join(command.argv[:2]))
    for path in ("README.md", "docs/runbook.md"):
        assert {"invoke deploy", "invoke rollback"} <= shown.get(path, set()), path
    assert "invoke sandbox.up" in shown["README.md"]


# --- the checker itself -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        ("invoke deplo --env=staging", "No idea what 'deplo' is"),
        ("invoke deploy --env=staging --fast", "No idea what '--fast' is"),
        ("invoke deploy --nope", "No idea what '--nope' is"),
        ("invoke deploy staging", "No idea what 'staging' is"),
        ("invoke rollback", "--env missing"),
        ("invoke logs --env", "needed value"),
        ("invoke maintenance --env=staging", "did not receive required positional arguments"),
        ("invoke maintenance --env=staging on off", "No idea what 'off' is"),
        ("invoke lock.release --env=staging --force", "No idea what '--force' is"),
        ("invoke", "without a task"),
        ("nox -s lint tset -- -m unit", "no nox session 'tset'"),
        ("nox --session=loadtests", "no nox session 'loadtests'"),
        ("nox -s", "without a session name"),
    ],
    ids=[
        "a task that does not exist is refused",
        "an option the task does not have is refused",
        "an unknown option is not taken for the value of --env",
        "a bare word where --env is expected is refused",
        "a required option left out is refused",
        "an option without its value is refused",
        "maintenance without on or off is refused",
        "maintenance with two states is refused",
        "an option of another tool is refused",
        "invoke without a task is refused",
        "a misspelled nox session is refused",
        "a nox session given with = is checked too",
        "nox -s without a name is refused",
    ],
)
def test_a_command_that_drifted_from_the_tasks_is_refused(command: str, problem: str) -> None:
    (argv,) = commands_in(command)
    found = command_problem(argv)
    assert found is not None and problem in found, found


@pytest.mark.parametrize(
    "command",
    [
        "invoke deploy --env=<env> --version=<version> --dry-run",
        "invoke rollback --env=staging --to=<release>",
        "invoke maintenance --env=<env> on",
        "invoke maintenance off --env staging",
        "invoke logs --env=staging --service=api --since=10m --tail=50 --follow",
        "invoke lock.release --env=staging --yes",
        "invoke sandbox.up --name=demo --hosts=1 --listings-env=staging",
        "invoke images.save --output=images.tar --version=<version>",
        "invoke version --output=$GITHUB_OUTPUT",
        "invoke status",
        "invoke --list",
        "nox",
        "nox --list",
        "nox -s lint tests -- -m unit",
        "nox -s loadtest -- --env=staging --profile=smoke",
    ],
    ids=[
        "a deploy with placeholders passes",
        "a rollback to a release passes",
        "maintenance takes its state as a word",
        "maintenance takes its state before the options too",
        "every logs option passes",
        "lock.release with --yes passes",
        "sandbox.up with dashed options passes",
        "images.save passes",
        "a shell variable as a value passes",
        "a task whose options all have defaults passes alone",
        "invoke's own --list passes",
        "nox alone passes",
        "nox's own flags pass",
        "several nox sessions and their arguments pass",
        "the staging smoke load test passes",
    ],
)
def test_a_command_of_existing_tasks_and_sessions_passes(command: str) -> None:
    (argv,) = commands_in(command)
    assert command_problem(argv) is None


@pytest.mark.parametrize(
    ("line", "commands"),
    [
        ("invoke up", [["invoke", "up"]]),
        ("$ invoke status --env=staging", [["invoke", "status", "--env=staging"]]),
        ("invoke down        # stop; `invoke down --volumes` too", [["invoke", "down"]]),
        (
            "python3 -m pip install -e '.[dev]' && invoke up",
            [["invoke", "up"]],
        ),
        ("invoke logs --env=staging | grep <request id>", [["invoke", "logs", "--env=staging"]]),
        ("SLIPWAY_VERSION=v2 invoke deploy --env=x", [["invoke", "deploy", "--env=x"]]),
        ("invoke build && nox -s lint; nox", [["invoke", "build"], ["nox", "-s", "lint"], ["nox"]]),
        ("==> invoke deploy --env=x (version v2)", []),
        ("curl -fsS https://localhost:8443/ready", []),
        ("  plan: nothing changed, then invoke it", []),
    ],
    ids=[
        "a command is one argv",
        "a console prompt is stripped",
        "a trailing comment is ignored",
        "the invoke part of an and-list is found",
        "the invoke side of a pipe is found",
        "a variable prefix is stripped",
        "every command of a line is found",
        "output that mentions invoke is not a command",
        "other programs are not checked",
        "prose inside a text block is not a command",
    ],
)
def test_lines_of_code_blocks_split_into_their_invoke_and_nox_commands(
    line: str, commands: list[list[str]]
) -> None:
    assert commands_in(line) == commands


def test_a_wrong_line_in_any_command_block_of_a_doc_is_reported(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "Prose mentioning `invoke nonsense` is not a code block.\n\n"
        "```sh\ninvoke up --env=local\n```\n\n"
        "```text\ninvoke sandbox.up --nmae=demo\n```\n\n"
        "```console\n$ invoke releases --env=demo\nrelease  outcome\n$ nox -s tsets\n```\n\n"
        "```bash\ninvoke rollback --env=demo --too=<release>\n```\n\n"
        "```yaml\ninvoke: not a command in a yaml block\n```\n\n"
        "    invoke indented --blocks are not scanned\n"
    )
    commands = doc_commands(doc, root=tmp_path)
    assert [(c.line, c.text) for c in commands] == [
        (4, "invoke up --env=local"),
        (8, "invoke sandbox.up --nmae=demo"),
        (12, "invoke releases --env=demo"),
        (14, "nox -s tsets"),
        (18, "invoke rollback --env=demo --too=<release>"),
    ]
    refused = {c.line: command_problem(c.argv) for c in commands if command_problem(c.argv)}
    assert sorted(refused) == [8, 14, 18], refused
    assert "No idea what '--nmae' is" in str(refused[8])
    assert "no nox session 'tsets'" in str(refused[14])


def test_no_two_test_files_share_a_name() -> None:
    """pytest imports test modules by basename (no packages): two files of one name in different
    test directories make the whole run fail at collection."""
    names: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        names.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert {n: p for n, p in names.items() if len(p) > 1} == {}
