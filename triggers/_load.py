"""Reading trigger files: YAML text to validated ``TriggerDef`` values, safely.

The YAML is read event by event into plain dicts and lists (never through
PyYAML's recursive composer and constructor), so that hostile input stays bounded:

- anchors and aliases are refused outright (no billion-laughs expansion);
- nesting deeper than ``MAX_YAML_DEPTH`` is refused as soon as it is seen, before
  the rest of the document is read, so ``[[[[...`` cannot exhaust the stack;
- files over ``MAX_FILE_BYTES`` are refused before parsing;
- only the YAML 1.2 core schema is resolved: ``yes``/``no``/``on``/``off``,
  ``2026-11-25`` and ``1:30`` stay strings (no Norway problem, no date objects),
  and tags other than the core ones are refused;
- duplicate mapping keys are an error instead of silently keeping the last.

Every issue of every file is collected and raised together as one
``DefinitionError``; line numbers come from the parser's marks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from ._errors import DefinitionError, DefinitionIssue
from ._spec import Locator, TriggerDef, kind_of, show, validate_definition


def _libyaml_parser() -> Any:
    """LibYAML's event parser when PyYAML was built with it (much faster), else None."""
    try:
        from yaml._yaml import CParser
    except ImportError:  # pragma: no cover - depends on how PyYAML was built
        return None
    return CParser


_FastParser: Any = _libyaml_parser()

MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_YAML_DEPTH = 64
MAX_ISSUES = 500
YAML_SUFFIXES = (".yaml", ".yml")

_TAG = "tag:yaml.org,2002:"
_NULL = re.compile(r"~|null|Null|NULL|")
_BOOL = re.compile(r"true|True|TRUE|false|False|FALSE")
_INT = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT = re.compile(
    r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
)
_MAX_NUMBER_CHARS = 64


def load_text(text: str, file: str = "<string>") -> list[TriggerDef]:
    """Validate the triggers in one YAML text; raises ``DefinitionError`` with every issue."""
    collector = _Collector()
    triggers = _load_one(text, file, collector)
    collector.check_duplicates(triggers)
    collector.raise_if_any()
    return [t for t, _, _ in triggers]


def load_paths(paths: Sequence[str | Path]) -> list[TriggerDef]:
    """Validate every trigger in ``paths`` (files, or directories searched recursively
    for ``*.yaml``/``*.yml`` in sorted order) as one set.

    Raises ``DefinitionError`` with all issues across all files, including trigger
    ids defined more than once in the set. Returns triggers in file order.
    """
    if isinstance(paths, str | Path):  # one path, not a sequence of characters
        paths = [paths]
    collector = _Collector()
    triggers: list[tuple[TriggerDef, str, int | None]] = []
    for file in _expand(paths, collector):
        if collector.full:
            collector.truncated = True
            break
        text = _read(file, collector)
        if text is not None:
            triggers.extend(_load_one(text, str(file), collector))
    collector.check_duplicates(triggers)
    collector.raise_if_any()
    return [t for t, _, _ in triggers]


# -- files ---------------------------------------------------------------------------


def _expand(paths: Sequence[str | Path], collector: _Collector) -> list[Path]:
    files: list[Path] = []
    seen: set[Path] = set()

    def add(file: Path) -> None:
        key = file.resolve()
        if key not in seen:
            seen.add(key)
            files.append(file)

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found: list[Path] = []
            for root, dirs, names in os.walk(path):
                dirs.sort()
                found.extend(Path(root, n) for n in names if n.endswith(YAML_SUFFIXES))
            for file in sorted(found, key=lambda p: p.parts):
                if file.is_file():
                    add(file)
        elif path.is_file():
            add(path)
        else:
            collector.add(DefinitionIssue(str(path), None, "", "no such file or directory"))
    return files


def _read(file: Path, collector: _Collector) -> str | None:
    name = str(file)
    try:
        size = file.stat().st_size
        if size > MAX_FILE_BYTES:
            collector.add(
                DefinitionIssue(name, None, "", f"file larger than {MAX_FILE_BYTES} bytes")
            )
            return None
        data = file.read_bytes()
    except OSError as exc:
        collector.add(DefinitionIssue(name, None, "", f"cannot read file: {exc.strerror or exc}"))
        return None
    if len(data) > MAX_FILE_BYTES:  # grew since stat
        collector.add(DefinitionIssue(name, None, "", f"file larger than {MAX_FILE_BYTES} bytes"))
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        collector.add(DefinitionIssue(name, None, "", f"not valid UTF-8 (byte offset {exc.start})"))
        return None


# -- one text ------------------------------------------------------------------------


def _load_one(
    text: str, file: str, collector: _Collector
) -> list[tuple[TriggerDef, str, int | None]]:
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        collector.add(DefinitionIssue(file, None, "", "not valid UTF-8 text (lone surrogate)"))
        return []
    if size > MAX_FILE_BYTES:
        collector.add(DefinitionIssue(file, None, "", f"file larger than {MAX_FILE_BYTES} bytes"))
        return []
    out: list[tuple[TriggerDef, str, int | None]] = []
    try:
        for item, line, in_list in _items(text):
            if collector.full:
                collector.truncated = True
                break
            if not isinstance(item, _Map):
                got = kind_of(item)
                message = (
                    f"a trigger must be a mapping, got {got}"
                    if in_list
                    else f"expected a list of triggers or one trigger mapping, got {got}"
                )
                collector.add(DefinitionIssue(file, None, "", message, line))
                continue
            try:
                trigger = validate_definition(item, file=file, locate=_locator(item))
            except DefinitionError as exc:
                collector.extend(exc.issues)
                continue
            out.append((trigger, file, item.line))
    except _Refused as exc:
        collector.add(DefinitionIssue(file, None, "", exc.message, exc.line))
    except yaml.YAMLError as exc:
        collector.add(DefinitionIssue(file, None, "", _yaml_message(exc), _yaml_line(exc)))
    return out


class _Refused(Exception):
    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _Map(dict[str, Any]):
    """A YAML mapping, remembering the line it starts on and the line of each key."""

    __slots__ = ("line", "lines")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.lines: dict[str, int] = {}


class _Seq(list[Any]):
    """A YAML sequence, remembering the line it starts on and the line of each item."""

    __slots__ = ("line", "lines")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.lines: list[int] = []


def _line_of(node: Any) -> int | None:
    return node.line if isinstance(node, _Map | _Seq) else None


def _locator(root: Any) -> Locator:
    def locate(path: tuple[str | int, ...]) -> int | None:
        node, line = root, _line_of(root)
        for seg in path:
            in_map = isinstance(node, _Map) and isinstance(seg, str) and seg in node
            in_seq = isinstance(node, _Seq) and isinstance(seg, int) and 0 <= seg < len(node)
            if not (in_map or in_seq):
                break
            line = node.lines[seg]
            node = node[seg]
        return line

    return locate


class _PyParser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
    """PyYAML's pure-Python event parser, without its recursive composer."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)


def _parser(text: str) -> Any:
    if _FastParser is not None:
        return _FastParser(text)
    return _PyParser(text)  # pragma: no cover - only without LibYAML


_SEQ_START = yaml.SequenceStartEvent
_MAP_START = yaml.MappingStartEvent
_SCALAR = yaml.ScalarEvent
_ENDS = (yaml.SequenceEndEvent, yaml.MappingEndEvent)
_SKIP = (yaml.StreamStartEvent, yaml.DocumentStartEvent, yaml.DocumentEndEvent)


def _items(text: str) -> Iterator[tuple[Any, int, bool]]:
    """Yield the triggers of ``text`` one by one, each as soon as it is complete.

    Yields ``(value, line, in_list)``: a document that is a list yields its items
    (``in_list``), any other non-empty document yields itself. Reading is event by
    event, without recursion; anchors, aliases, odd tags, duplicate keys and nesting
    beyond ``MAX_YAML_DEPTH`` raise ``_Refused``. Yielding early keeps memory to one
    trigger's worth of line bookkeeping, however long the file.
    """
    parser = _parser(text)
    # Frames: [container, pending mapping key or None]; frame 0 is the document root.
    stack: list[list[Any]] = []
    root_is_list = False
    while True:
        event = parser.get_event()
        cls = type(event)
        if cls in _SKIP:
            continue
        if cls is yaml.StreamEndEvent:
            return
        line = event.start_mark.line + 1
        if cls in _ENDS:
            done = stack.pop()[0]
            if len(stack) == 1 and root_is_list:
                yield done, done.line, True  # a whole item of the top-level list
            elif not stack and not root_is_list:
                yield done, done.line, False  # a document that is one mapping
            continue
        if cls is yaml.AliasEvent:
            raise _Refused(
                line, f"YAML aliases are not allowed (*{event.anchor}); write the value out"
            )
        if event.anchor is not None:
            raise _Refused(
                line, f"YAML anchors are not allowed (&{event.anchor}); write the value out"
            )
        if stack:
            frame = stack[-1]
            container = frame[0]
            if frame[1] is None and type(container) is _Map:
                # A mapping key: always its text, whatever it would resolve to.
                if cls is not _SCALAR:
                    raise _Refused(
                        line, "mapping keys must be plain strings, not lists or mappings"
                    )
                key = event.value
                if key in container.lines:
                    raise _Refused(line, f"duplicate key {show(key)}")
                container.lines[key] = line
                frame[1] = key
                continue
        node: _Map | _Seq | None = None
        if cls is _SCALAR:
            value = _scalar(event, line)
        else:
            if len(stack) >= MAX_YAML_DEPTH:
                raise _Refused(line, f"YAML nested deeper than {MAX_YAML_DEPTH} levels")
            tag = event.tag
            if cls is _SEQ_START:
                if tag not in (None, "!", _TAG + "seq"):
                    raise _Refused(line, f"unsupported YAML tag {show(tag)}")
                value = node = _Seq(line)
            else:
                if tag not in (None, "!", _TAG + "map"):
                    raise _Refused(line, f"unsupported YAML tag {show(tag)}")
                value = node = _Map(line)
        if not stack:
            if node is None:  # a document that is one scalar (or empty)
                if value is not None:
                    yield value, line, False
                continue
            root_is_list = type(node) is _Seq
        elif len(stack) == 1 and root_is_list:
            # Items of the top-level list are not kept in it: yielded as they complete.
            if node is None:
                yield value, line, True
                continue
        else:
            frame = stack[-1]
            container = frame[0]
            if type(container) is _Seq:
                container.append(value)
                container.lines.append(line)
            else:
                container[frame[1]] = value
                frame[1] = None
        if node is not None:
            stack.append([node, None])


def _scalar(event: Any, line: int) -> Any:
    value: str = event.value
    tag = event.tag
    if tag is None:
        return _plain(value, line) if event.implicit[0] else value
    if tag in ("!", _TAG + "str"):
        return value
    if tag == _TAG + "null" and _NULL.fullmatch(value):
        return None
    if tag == _TAG + "bool" and _BOOL.fullmatch(value):
        return value.lower() == "true"
    if tag == _TAG + "int" and _INT.fullmatch(value):
        return _int(value, line)
    if tag == _TAG + "float" and (_FLOAT.fullmatch(value) or _INT.fullmatch(value)):
        return _float(value, line)
    if tag in (_TAG + "null", _TAG + "bool", _TAG + "int", _TAG + "float"):
        raise _Refused(line, f"cannot read {show(value)} as {tag.replace(_TAG, '!!')}")
    raise _Refused(line, f"unsupported YAML tag {show(tag)}")


def _plain(value: str, line: int) -> Any:
    """Resolve an untagged plain scalar by the YAML 1.2 core schema."""
    if not value:
        return None
    first = value[0]
    if first in "~nN" and _NULL.fullmatch(value):
        return None
    if first in "tTfF" and _BOOL.fullmatch(value):
        return value.lower() == "true"
    if first in "+-.0123456789":
        if _INT.fullmatch(value):
            return _int(value, line)
        if _FLOAT.fullmatch(value):
            return _float(value, line)
    return value


def _int(value: str, line: int) -> int:
    if len(value) > _MAX_NUMBER_CHARS:
        raise _Refused(line, f"integer too long: {show(value)}")
    if value.startswith("0o"):
        return int(value[2:], 8)
    if value.startswith("0x"):
        return int(value[2:], 16)
    return int(value)


def _float(value: str, line: int) -> float:
    if len(value) > _MAX_NUMBER_CHARS:
        raise _Refused(line, f"number too long: {show(value)}")
    lowered = value.lower()
    if lowered.endswith(".inf"):
        return float("-inf") if lowered.startswith("-") else float("inf")
    if lowered == ".nan":
        return float("nan")
    return float(value)


def _yaml_message(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        parts = [p for p in (exc.context, exc.problem) if p]
        if parts:
            return "invalid YAML: " + ", ".join(parts)
    return f"invalid YAML: {exc}".splitlines()[0]


def _yaml_line(exc: yaml.YAMLError) -> int | None:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        if mark is not None:
            return int(mark.line) + 1
    return None


# -- issues --------------------------------------------------------------------------


class _Collector:
    """Gathers issues across files, up to ``MAX_ISSUES``; loading stops once it is full."""

    def __init__(self) -> None:
        self.issues: list[DefinitionIssue] = []
        self.truncated = False

    @property
    def full(self) -> bool:
        return len(self.issues) >= MAX_ISSUES

    def add(self, issue: DefinitionIssue) -> None:
        if self.full:
            self.truncated = True
        else:
            self.issues.append(issue)

    def extend(self, issues: Iterable[DefinitionIssue]) -> None:
        for issue in issues:
            self.add(issue)

    def check_duplicates(self, triggers: Iterable[tuple[TriggerDef, str, int | None]]) -> None:
        first: dict[str, tuple[str, int | None]] = {}
        for trigger, file, line in triggers:
            if trigger.id in first:
                where, at = first[trigger.id]
                origin = where if at is None else f"{where}:{at}"
                self.add(
                    DefinitionIssue(
                        file,
                        trigger.id,
                        "id",
                        f"duplicate trigger id (first defined at {origin})",
                        line,
                    )
                )
            else:
                first[trigger.id] = (file, line)

    def raise_if_any(self) -> None:
        if not self.issues:
            return
        issues = list(self.issues)
        if self.truncated:
            issues.append(
                DefinitionIssue(
                    issues[-1].file,
                    None,
                    "",
                    f"stopped after {MAX_ISSUES} problems; fix these and run again for the rest",
                )
            )
        raise DefinitionError(issues)
