"""The README's shell commands, for the tests that check and run them."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """Shell commands of the README's ```sh blocks, trailing comments removed."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL):
        for line in block.splitlines():
            command = re.split(r"\s{2,}#", line)[0].strip()
            if command:
                commands.append(command)
    return commands
