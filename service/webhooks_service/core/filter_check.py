"""Checking a payload filter at PUT and in the dry run: the violations on the field ``filter``.

Too long, too costly (comprehension macros), does not parse, nests too
deep, is not a boolean, or type-checks against none of the subscribed types
(the errors say where: line and column, and why). An event of a type the
filter does not type-check against never matches it (core/filters.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from webhooks_service.core import catalog
from webhooks_service.core.filter_env import compile_program
from webhooks_service.errors import FieldViolation

__all__ = [
    "FIELD",
    "MAX_COMPREHENSIONS",
    "MAX_FILTER_LENGTH",
    "MAX_NESTING",
    "check",
    "subscribed_types",
]

FIELD = "filter"
MAX_FILTER_LENGTH = 1024
MAX_COMPREHENSIONS = 4
MAX_NESTING = 32  # cel-cpp's parser refuses deeper expressions itself
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})


def subscribed_types(patterns: Iterable[str]) -> list[str]:
    """The catalog types a configuration's patterns cover, in catalog order."""
    patterns = tuple(patterns)
    return [t for t in catalog.EVENT_TYPES if catalog.matches_any(patterns, t)]


_ERROR_LINE = re.compile(r"ERROR: <input>:(-?\d+):(-?\d+): (.*)")


def _explain(exc: Exception) -> str:
    """cel-cpp's error text in the API's voice: ``line 1, column 12: …``."""
    text = str(exc)
    if "recursion" in text.lower():
        return f"nests deeper than {MAX_NESTING} levels"
    found: list[str] = []
    for line in text.splitlines():
        m = _ERROR_LINE.search(line)
        if m is None:
            continue
        row, col, why = m.groups()
        why = why.removesuffix(" [INVALID_ARGUMENT]").strip()
        where = f"line {row}, column {col}: " if int(row) > 0 else ""
        found.append(where + why)
    return "; ".join(dict.fromkeys(found)) or text.split("\n", 1)[0]


def _code_only(expression: str) -> str:
    """The expression with the contents of its string and bytes literals blanked."""
    out: list[str] = []
    i, n = 0, len(expression)
    while i < n:
        c = expression[i]
        if c in "'\"":
            raw = i > 0 and expression[i - 1] in "rR"
            quote = expression[i : i + 3] if expression[i : i + 3] == c * 3 else c
            j = i + len(quote)
            while j < n and not expression.startswith(quote, j):
                j += 2 if expression[j] == "\\" and not raw else 1
            out.append(quote + " " * (min(j, n) - i - len(quote)) + quote)
            i = j + len(quote)
            continue
        out.append(c)
        i += 1
    return "".join(out)


_MACRO_CALL = re.compile(r"\.\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def _cost_problem(expression: str) -> str | None:
    """More than MAX_COMPREHENSIONS macros, or one inside another (quadratic), is refused."""
    code = _code_only(expression)
    spans: list[tuple[int, int]] = []
    for m in _MACRO_CALL.finditer(code):
        if m.group(1) not in _MACROS:
            continue
        start = m.end() - 1
        depth, end = 0, len(code)
        for k in range(start, len(code)):
            if code[k] == "(":
                depth += 1
            elif code[k] == ")":
                depth -= 1
                if depth == 0:
                    end = k
                    break
        spans.append((start, end))
    if len(spans) > MAX_COMPREHENSIONS:
        return (
            f"too costly: {len(spans)} comprehension macros (all, exists, exists_one, map, "
            f"filter); at most {MAX_COMPREHENSIONS}"
        )
    for a_start, a_end in spans:
        for b_start, _ in spans:
            if a_start < b_start < a_end:
                return (
                    "too costly: a comprehension macro (all, exists, exists_one, map, filter) "
                    "inside another; its cost grows with the product of the lists' sizes"
                )
    return None


def check(expression: str, patterns: Sequence[str]) -> list[FieldViolation]:
    """Why ``expression`` cannot be the filter of a configuration of ``patterns`` (none if it can).

    It must type-check against at least one subscribed type; for the others
    it never matches (a field they lack cannot be compared).
    """
    if not expression:
        return []
    if len(expression) > MAX_FILTER_LENGTH:
        return [
            FieldViolation(FIELD, f"at most {MAX_FILTER_LENGTH} characters (got {len(expression)})")
        ]
    if not expression.strip():
        return [FieldViolation(FIELD, "blank; leave it empty to receive every event")]
    problem = _cost_problem(expression)
    if problem is not None:
        return [FieldViolation(FIELD, problem)]
    types = subscribed_types(patterns)
    if not types:
        return []  # the event types are refused on their own
    errors: list[tuple[str, str]] = []
    for event_type in types:
        try:
            compile_program(expression, event_type)
            return []
        except (RuntimeError, TypeError) as exc:
            reason = str(exc) if isinstance(exc, TypeError) else _explain(exc)
            if isinstance(exc, TypeError) or "Syntax error" in reason or "nests" in reason:
                return [FieldViolation(FIELD, reason)]  # the same for every type
            errors.append((event_type, reason))
    # A mismatch where the field exists says more than "no such field" elsewhere.
    errors.sort(key=lambda e: e[1].find("undefined field") >= 0)
    if len(errors) == 1:
        return [FieldViolation(FIELD, f"{errors[0][1]} ({errors[0][0]})")]
    shown = "; ".join(f"{t}: {why}" for t, why in errors[:3])
    more = f"; and {len(errors) - 3} more" if len(errors) > 3 else ""
    return [
        FieldViolation(FIELD, f"type-checks against none of the subscribed types: {shown}{more}")
    ]
