"""Whether an `invoke` or `nox` command names tasks, options and sessions that exist: one
checker for the docs (test_docs_commands.py) and the workflows (test_workflows.py).

invoke commands are parsed with invoke's own parser against the real task collection
(tasks.ns). Beyond a plain parse, a word where an option is expected is refused (invoke would
take `deploy --nope` as `--env=--nope`), except for tasks that declare positional arguments
(`invoke maintenance --env=<env> on`), and a required option left out is refused. nox sessions
are read from noxfile.py's decorators.
"""

from __future__ import annotations

import ast
from pathlib import Path

from invoke.collection import Collection
from invoke.parser import ParseError, Parser, ParserContext
from invoke.program import Program
from invoke.tasks import Task

import tasks

ROOT = Path(__file__).resolve().parents[3]
# Tasks whose positional arguments are meant to be given as bare words.
POSITIONAL_TASKS = {"maintenance"}
NOX_SESSION_FLAGS = {"-s", "-e", "--session", "--sessions"}


def nox_sessions(noxfile: Path = ROOT / "noxfile.py") -> set[str]:
    """Names of the functions decorated with @nox.session (or its `name=`)."""
    sessions = set()
    for node in ast.parse(noxfile.read_text(encoding="utf-8")).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            call = decorator if isinstance(decorator, ast.Call) else None
            target = call.func if call else decorator
            if ast.unparse(target) not in {"nox.session", "session"}:
                continue
            name = node.name
            for keyword in call.keywords if call else []:
                if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                    name = str(keyword.value.value)
            sessions.add(name)
    return sessions


def task_names() -> set[str]:
    """Every task name and alias of tasks.ns."""
    names = set(tasks.ns.task_names)
    for aliases in tasks.ns.task_names.values():
        names.update(aliases)
    return names


def every_task(collection: Collection) -> list[Task[..., object]]:
    found = list(collection.tasks.values())
    for sub in collection.collections.values():
        found += every_task(sub)
    return found


def task_contexts() -> list[ParserContext]:
    """tasks.ns.to_contexts(), leaving the tasks as they were.

    invoke's Task.get_arguments() pops each argument's help text out of `task.help` as it
    builds the parser arguments: without the restore, every later reader of the help (invoke
    --help, test_tasks.py) would find none.
    """
    every = every_task(tasks.ns)
    saved = [(task, dict(task.help)) for task in every]
    try:
        return tasks.ns.to_contexts()
    finally:
        for task, help_texts in saved:
            task.help.clear()
            task.help.update(help_texts)


def _contexts() -> tuple[ParserContext, list[ParserContext], dict[str, list[str]]]:
    """Fresh parser contexts: invoke's core flags, the tasks, and each task's required options.

    Tasks outside POSITIONAL_TASKS lose their positional arguments, so a stray word or an
    unknown `--flag` is an error instead of the value of an option without a default.
    """
    core = ParserContext(args=Program().core_args())
    contexts = task_contexts()
    required: dict[str, list[str]] = {}
    for context in contexts:
        if context.name not in POSITIONAL_TASKS:
            required[context.name] = [arg.name for arg in context.positional_args]
            context.positional_args = []
    return core, contexts, required


def invoke_problem(args: list[str]) -> str | None:
    """Why `invoke <args>` would not run as shown, or None."""
    if not args:
        return "invoke without a task (see `invoke --list`)"
    if not args[0].startswith("-") and args[0] not in task_names():
        return f"No idea what {args[0]!r} is: no invoke task {args[0]!r} (see `invoke --list`)"
    core, contexts, required = _contexts()
    try:
        result = Parser(initial=core, contexts=contexts).parse_argv(args)
    except ParseError as err:
        return f"invoke {args[0]}: {err}"
    for context in result[1:]:
        missing = [
            name for name in required.get(context.name, []) if context.args[name].value is None
        ]
        if missing:
            options = ", ".join(f"--{name}" for name in missing)
            return f"invoke {context.name}: {options} missing (the task has no default for it)"
    if len(result) == 1 and not any(arg.value for arg in result[0].args.values()):
        return "invoke without a task (see `invoke --list`)"
    return None


def nox_problem(
    args: list[str], sessions: set[str] | None = None, only_sessions: bool = False
) -> str | None:
    """Why `nox <args>` names a session that does not exist, or None. With `only_sessions`,
    any option but -s/--session(s) is refused too."""
    sessions = nox_sessions() if sessions is None else sessions
    named: list[str] = []
    i = 0
    while i < len(args) and args[i] != "--":
        flag, equals, inline = args[i].partition("=")
        i += 1
        if flag not in NOX_SESSION_FLAGS or (only_sessions and flag == "-e"):
            if only_sessions:
                return f"nox option {args[i - 1]!r}: only `nox [-s <session>...] [-- args]`"
            continue
        values = [inline] if equals else []
        while not equals and i < len(args) and not args[i].startswith("-"):
            values.append(args[i])
            i += 1
        if not values or not all(values):
            return f"nox {flag} without a session name"
        named += values
    unknown = [name for name in named if name not in sessions]
    if unknown:
        return f"no nox session {', '.join(map(repr, unknown))} in noxfile.py (see `nox --list`)"
    return None
