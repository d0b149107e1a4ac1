"""How the doctor's checks are shown: one line each (OK, FAIL or SKIP), or one JSON object each, then a summary.

A line reads ``STATUS  name  what was seen -> what to do``; the part after
``->`` is there when something is to be done. In JSON mode every check is
an object ``{"check", "status", "message", "fix", "elapsed", "data"}`` on
its own line as soon as it is known, and the last line is the summary
``{"check": "summary", "status", "ok", "fail", "skip", "exit_status"}``.
A SKIP is no failure: the exit status is 0 when no check failed, else 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ._errors import EXIT_FAILED, EXIT_OK
from ._output import Output

__all__ = ["Check", "CheckReport", "Status"]

Status = Literal["OK", "FAIL", "SKIP"]

_NAME_WIDTH: Final = 16
_STYLES: Final[dict[str, str]] = {"OK": "green", "FAIL": "bold red", "SKIP": "yellow"}


@dataclass(frozen=True)
class Check:
    """One check's verdict: ``message`` says what was seen, ``fix`` what to do (FAIL and SKIP)."""

    name: str
    status: Status
    message: str
    fix: str | None = None
    elapsed: float | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        text = f"{self.status:<4}  {self.name:<{_NAME_WIDTH}}  {self.message}"
        return f"{text} -> {self.fix}" if self.fix else text

    def as_json(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "status": self.status,
            "message": self.message,
            "fix": self.fix,
            "elapsed": self.elapsed,
            "data": self.data,
        }


class CheckReport:
    """Prints each check as it is added and keeps them for the summary and the exit status."""

    def __init__(self, out: Output) -> None:
        self._out = out
        self.checks: dict[str, Check] = {}

    def add(self, check: Check) -> Check:
        self.checks[check.name] = check
        if self._out.json_mode:
            self._out.emit(check.as_json())
        else:
            self._out.say(check.line(), style=_STYLES[check.status])
        return check

    def ok(self, name: str, message: str, **extra: Any) -> Check:
        return self.add(Check(name, "OK", message, **extra))

    def fail(self, name: str, message: str, fix: str, **extra: Any) -> Check:
        return self.add(Check(name, "FAIL", message, fix, **extra))

    def skip(self, name: str, message: str, fix: str | None = None, **extra: Any) -> Check:
        return self.add(Check(name, "SKIP", message, fix, **extra))

    def passed(self, name: str) -> bool:
        check = self.checks.get(name)
        return check is not None and check.status == "OK"

    def count(self, status: Status) -> int:
        return sum(1 for check in self.checks.values() if check.status == status)

    def finish(self) -> int:
        """Print the summary; the exit status (0 when no check failed)."""
        ok, fail, skip = self.count("OK"), self.count("FAIL"), self.count("SKIP")
        code = EXIT_FAILED if fail else EXIT_OK
        if self._out.json_mode:
            self._out.emit(
                {
                    "check": "summary",
                    "status": "FAIL" if fail else "OK",
                    "ok": ok,
                    "fail": fail,
                    "skip": skip,
                    "exit_status": code,
                }
            )
            return code
        verdict = "fix the FAIL lines above, then run again" if fail else "no check failed"
        self._out.say(f"\n{ok} OK, {fail} FAIL, {skip} SKIP: {verdict}")
        return code
