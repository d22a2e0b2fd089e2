"""Collects a parse's problems and warnings, keeping the first few and counting the rest,
and writes JSON paths and values as messages show them."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from sriovdp.errors import MAX_LISTED_PROBLEMS, ConfigProblem, listed

Text = str | Callable[[], str]
"""A path or message, or a function making it: only the kept ones are ever made, so a
document with 200,000 bad values costs a count, not 200,000 messages."""


def _text(text: Text) -> str:
    return text if isinstance(text, str) else text()


@dataclass
class Report:
    """Problems (fatal) and warnings in the order found: the first
    :data:`~sriovdp.errors.MAX_LISTED_PROBLEMS` of each are kept, the rest counted."""

    problems: list[ConfigProblem] = field(default_factory=list)
    warnings: list[ConfigProblem] = field(default_factory=list)
    problem_count: int = 0
    warning_count: int = 0

    def error(self, path: Text, message: Text) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_LISTED_PROBLEMS:
            self.problems.append(ConfigProblem(_text(path), _text(message)))

    def warn(self, path: Text, message: Text) -> None:
        self.warning_count += 1
        if len(self.warnings) < MAX_LISTED_PROBLEMS:
            self.warnings.append(ConfigProblem(_text(path), _text(message)))

    def listed_problems(self, *, strict: bool = False) -> list[ConfigProblem]:
        """The problems to report (with ``strict``, the warnings count as problems), the
        first few and then ``... and K more problems``."""
        if not strict:
            return listed(self.problems, total=self.problem_count)
        warnings = [ConfigProblem(w.path, f"{w.message} (a warning; strict mode refuses it)")
                    for w in self.warnings]
        kept = (self.problems + warnings)[:MAX_LISTED_PROBLEMS]
        return listed(kept, total=self.problem_count + self.warning_count)

    def listed_warnings(self) -> list[ConfigProblem]:
        return listed(self.warnings, "warnings", total=self.warning_count)


def show(value: object, limit: int = 60) -> str:
    """A value as JSON text for messages (``"yes"``, ``123``, ``null``), cut to ``limit``."""
    # never dump a megabyte to keep 60 characters of it
    if isinstance(value, str | list) and len(value) > limit:
        value = value[:limit]
    elif isinstance(value, dict) and len(value) > limit:
        value = dict(list(value.items())[:limit])
    try:
        if isinstance(value, Decimal):  # a number too long for int()
            text = str(value)
        else:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (RecursionError, ValueError):
        text = "a deeply nested value"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates


_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def join(path: str, key: str | int) -> str:
    """``resourceList`` + 1 → ``resourceList[1]``; + ``"*"`` → ``additionalInfo["*"]``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _IDENT_RE.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{show(key)}]"


def plural(count: int, noun: str) -> str:
    """``1 resource``, ``2 resources``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
