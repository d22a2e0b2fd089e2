"""Decodes the config text as Go's ``encoding/json`` does where users rely on it — keys
matched case-insensitively, the last of duplicate keys wins — within bounds: at most
1 MiB, 64 levels deep, and every refusal placed by line and column or JSON path."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from functools import partial
from typing import Any

from sriovdp.errors import ConfigError, ConfigProblem
from sriovdp.model.config.report import Report, join

MAX_CONFIG_BYTES = 1024 * 1024
"""1 MiB: what one ConfigMap can hold (the API server refuses a larger one), so no real
config is larger and a larger file is refused before it is parsed."""
MAX_DEPTH = 64
"""Nesting limit; the schema itself needs 6 levels (``resourceList[0].selectors[0].vendors[0]``)."""


class JsonObject(dict[str, Any]):
    """A decoded JSON object that also keeps every (key, value) pair in file order."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs


class _Constant:
    """``NaN``, ``Infinity`` or ``-Infinity`` in the text (not JSON): refused after decoding,
    when its JSON path is known."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def _parse_int(text: str) -> int | Decimal:
    # Python refuses int() of more than 4300 digits; such a number can only be a type error.
    return int(text) if len(text) < 4000 else Decimal(text)


def size_problem(size: int) -> ConfigProblem | None:
    """Why a config of ``size`` bytes is refused before parsing, if it is."""
    if size <= MAX_CONFIG_BYTES:
        return None
    return ConfigProblem("", f"the config is {size:,} bytes, larger than the {MAX_CONFIG_BYTES:,}"
                             " bytes (1 MiB) a ConfigMap can hold")


def _position(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    return f"line {line} column {index - (text.rfind(chr(10), 0, index) + 1) + 1}"


_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]|-?Infinity|NaN')
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


def _deeper_than_limit(text: str) -> bool:
    """Whether the (decoded) document nests more than :data:`MAX_DEPTH` levels, at C speed:
    strings and scalars dropped, each pass removes the innermost bracket pairs."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    brackets = _NOT_BRACKETS.sub("", _STRING.sub("", text))
    for _ in range(MAX_DEPTH):
        shorter = brackets.replace("[]", "").replace("{}", "")
        if not shorter:
            return False
        brackets = shorter
    return True


def _first_token(text: str, wanted: Callable[[str, int], bool]) -> int | None:
    """Index of the first structural token (outside strings) for which ``wanted(token,
    depth)`` holds, ``depth`` being the nesting level after an opening bracket."""
    depth = 0
    for m in _TOKENS.finditer(text):
        token = m.group()
        if token in ("[", "{"):
            depth += 1
        elif token in ("]", "}"):
            depth -= 1
        if token[0] != '"' and wanted(token, depth):
            return m.start()
    return None


def _too_deep(token: str, depth: int) -> bool:
    return token in ("[", "{") and depth > MAX_DEPTH


def _constant(token: str, depth: int) -> bool:
    return token[-1] in "yN"


def _oddity(value: object, depth: int = 1) -> tuple[str, list[str | int]] | None:
    """The first thing in the decoded ``value`` that is not accepted JSON — too deep, a
    ``NaN``/``Infinity``, a lone surrogate (it cannot be sent to the kubelet as UTF-8) — as
    (what, the JSON path's keys, innermost first)."""
    if isinstance(value, str):
        return None if value.isascii() or _encodes(value) else ("a lone surrogate", [])
    if isinstance(value, _Constant):
        return f"{value.name} is not a JSON value", []
    if isinstance(value, JsonObject | list) and depth > MAX_DEPTH:
        return f"nested more than {MAX_DEPTH} levels deep", []
    items = value.pairs if isinstance(value, JsonObject) else (
        enumerate(value) if isinstance(value, list) else ())
    for key, item in items:
        if isinstance(key, str) and not (key.isascii() or _encodes(key)):
            return "a lone surrogate in a key", []
        if isinstance(item, str | int | float | bool | None):
            if isinstance(item, str) and not (item.isascii() or _encodes(item)):
                return "a lone surrogate", [key]
            continue
        found = _oddity(item, depth + 1)
        if found is not None:
            found[1].append(key)
            return found
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _invalid(path: str, text: str, index: int | None, what: str) -> ConfigError:
    if "surrogate" in what:
        return ConfigError(ConfigProblem(
            path, f"invalid Unicode: {what} (it cannot be sent as UTF-8)"))
    where = f" at {_position(text, index)}" if index is not None else ""
    return ConfigError(ConfigProblem(path, f"invalid JSON{where}: {what}"))


def _text(text: str | bytes) -> str:
    """The document as text, once its size is known to be within the limit."""
    if isinstance(text, str):
        size = len(text) if len(text) * 4 <= MAX_CONFIG_BYTES else len(
            text.encode("utf-8", "replace"))
    else:
        size = len(text)
    problem = size_problem(size)
    if problem is not None:
        raise ConfigError(problem)
    if isinstance(text, str):
        return text
    raw = bytes(text)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = _position(raw[: exc.start].decode("utf-8", "replace"), exc.start)
        raise ConfigError(ConfigProblem(
            "", f"invalid UTF-8 at byte {exc.start} ({where})")) from None


def load_json(text: str | bytes) -> object:
    """Decode the document.

    Raises:
        ConfigError: one problem: the size, or ``invalid JSON at line L column C: <reason>``
            (with the JSON path too where there is one).
    """
    text = _text(text)
    constants = False

    def constant(name: str) -> _Constant:
        nonlocal constants
        constants = True
        return _Constant(name)

    try:
        doc = json.loads(text, object_pairs_hook=JsonObject, parse_int=_parse_int,
                         parse_constant=constant)
    except json.JSONDecodeError as exc:
        hint = exc.msg
        if exc.msg == "Extra data" and not exc.doc.lstrip().startswith(("{", "[")):
            hint += ' (is the opening "{" missing?)'
        elif not text.strip():
            hint = "the document is empty (expected an object with \"resourceList\")"
        elif text.startswith("\ufeff"):
            hint = "the document starts with a byte order mark (BOM): save it as UTF-8 without one"
        raise _invalid("", text, exc.pos, hint) from None
    except RecursionError:
        raise _invalid("", text, _first_token(text, _too_deep),
                       f"nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:  # anything else the decoder refuses
        raise _invalid("", text, None, str(exc)) from None
    if constants or _deeper_than_limit(text) or _SURROGATE.search(text):
        _refuse_oddity(doc, text)
    return doc


def _refuse_oddity(doc: object, text: str) -> None:
    """Raise for the first of :func:`_oddity` in ``doc``, placed by path and position."""
    found = _oddity(doc)
    if found is None:
        return
    what, keys = found
    path = ""
    for key in reversed(keys):
        path = join(path, key)
    index = None
    if what.endswith("deep"):
        index = _first_token(text, _too_deep)
    elif what.endswith("value"):
        index = _first_token(text, _constant)
    raise _invalid(path, text, index, what)


def canonical(
    obj: JsonObject,
    known: Mapping[str, str],
    path: str,
    report: Report,
    unknown: Callable[[str], str],
    *,
    unknown_is_error: bool = False,
) -> tuple[dict[str, Any], dict[str, str]]:
    """``obj`` with each known key spelled canonically, as Go matches struct fields, and
    each canonical key's spelling in the file (``{"IsRdma": "isRdma"}``), for messages.

    A key matches case-insensitively (all canonical keys are ASCII and distinct when folded,
    so an exact match never competes with a folded one); the last of duplicates wins.
    Unknown keys are dropped with the warning (or error) ``unknown(key)``.
    """
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    flag = report.error if unknown_is_error else report.warn
    for key, value in obj.pairs:
        canon = known.get(key.casefold())
        if canon is None or len(canon) != len(key):  # "ß" folds to "ss": Go does not match it
            flag(partial(join, path, key), partial(unknown, key))
            continue
        if canon in out:
            report.warn(partial(join, path, key), partial(_repeated, spelled[canon], key))
        out[canon] = value
        spelled[canon] = key
    return out, spelled


def _repeated(first: str, key: str) -> str:
    return f'given more than once (as "{first}" and "{key}"); the last one is used'
