"""Read a pip-audit JSON report and say what was checked, what is vulnerable, what was not checked.

pip-audit exits 0 when it could not reach the advisory service: every dependency then carries a
`skip_reason` and no vulnerability list. Counting that as clean would hide every advisory, so an
unchecked dependency is a failure of its own, reported as "not checked", never as "clean".

Usage: python -m ops.audit REPORT.json
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class AuditResult:
    checked: list[str] = field(default_factory=list)
    vulnerable: dict[str, list[str]] = field(default_factory=dict)
    unchecked: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.checked) and not self.vulnerable and not self.unchecked

    def lines(self) -> list[str]:
        out = [f"{name}: {', '.join(ids)}" for name, ids in sorted(self.vulnerable.items())]
        total = len(self.checked) + len(self.unchecked)
        if self.unchecked:
            reason = next(iter(self.unchecked.values()))
            out.append(
                f"NOT CHECKED: {len(self.unchecked)} of {total} locked dependencies could not be "
                f"audited (advisories unreachable?), e.g. {reason!r}. This is not a clean result: "
                "run the scan where PyPI's advisory service is reachable (the CI workflow does)."
            )
        if self.vulnerable:
            out.append(f"VULNERABLE: {len(self.vulnerable)} locked dependencies have advisories")
        if self.ok:
            out.append(f"clean: {len(self.checked)} locked dependencies checked, none vulnerable")
        elif not total:
            out.append("NOT CHECKED: the report lists no dependencies at all")
        return out


def classify(report: dict[str, Any]) -> AuditResult:
    result = AuditResult()
    for dep in report.get("dependencies", []):
        label = f"{dep.get('name')} {dep.get('version', '?')}"
        if dep.get("skip_reason"):
            result.unchecked[label] = str(dep["skip_reason"])
        elif "vulns" not in dep:
            result.unchecked[label] = "no vulnerability data in the report"
        else:
            result.checked.append(label)
            if dep["vulns"]:
                result.vulnerable[label] = [str(v.get("id")) for v in dep["vulns"]]
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m ops.audit REPORT.json", file=sys.stderr)
        return 2
    path = Path(argv[0])
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"NOT CHECKED: cannot read pip-audit report {path}: {exc}", file=sys.stderr)
        return 1
    result = classify(report)
    for line in result.lines():
        print(line)
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
