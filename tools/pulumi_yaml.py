"""YAML as the Pulumi CLI reads it: one reading for the program, `make check`, the docs and the tests.

The CLI parses Pulumi.yaml and Pulumi.<stack>.yaml with Go's gopkg.in/yaml.v3 and hands every config
value to the program as text (pulumi/sdk go/common/resource/config: object.MarshalString). This module
does the same, so what `make check` validates is what `pulumi up` runs with:

- Plain scalars resolve by yaml.v3's rules, which follow YAML 1.2: only true/false (True, TRUE...) are
  booleans, so `on`, `off`, `yes`, `no`, `y`, `n` stay strings (YAML 1.1 readers such as PyYAML make
  them booleans). Like yaml.v3: `~`/`null`/empty are null, ints may be 0x/0o/0b/0-prefixed octal and
  contain `_`, dates and RFC 3339 times are timestamps. Quoted, block and `!!str` scalars are strings.
- A key repeated in one mapping is an error, as in yaml.v3 (`mapping key "x" already defined`).
- A syntax error is one line: `file:line:column: problem`.

`config_text` turns a parsed value into the text the program receives: strings as they are, booleans
and numbers as JSON (`true`, `2`, `1.5`), null as empty, timestamps as Go prints them, lists and maps
as Go's JSON. tests/engine/test_config_yaml.py compares all of it with the real CLI.

ruamel.yaml (pure Python, YAML 1.2) parses; only the scalar resolution is ported from yaml.v3.
"""

from __future__ import annotations

import copy
import datetime as _dt
import functools
import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)

_STR, _INT, _FLOAT, _BOOL, _NULL = (f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null"))
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "<<"
_WORDS: dict[str, Any] = {
    **dict.fromkeys(("true", "True", "TRUE"), True),
    **dict.fromkeys(("false", "False", "FALSE"), False),
    **dict.fromkeys(("", "~", "null", "Null", "NULL"), None),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
_YAML_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
# Go's time.Parse layouts yaml.v3 tries: RFC 3339 (T or t) with short date fields, space-separated
# without zone, date only.
_TIME = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:(?P<sep>[Tt ])(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,9}))?(?P<zone>Z|[+-]\d{2}:\d{2})?)?$"
)
_INT64 = (-(2**63), 2**63 - 1)


class YamlError(ValueError):
    """A file the CLI would refuse to read; str() is one line: file:line:column: problem."""


@dataclass(frozen=True)
class Timestamp:
    """A YAML timestamp as yaml.v3 decodes it (a Go time.Time); `str()` is Go's Time.String()."""

    value: _dt.datetime
    zone: str  # "UTC", or "" for an offset (Go prints the offset as the zone name then)

    def __str__(self) -> str:
        v = self.value
        text = v.strftime("%Y-%m-%d %H:%M:%S")
        if v.microsecond:
            text += f".{v.microsecond:06d}".rstrip("0")
        offset = v.utcoffset() or _dt.timedelta()
        minutes = int(offset.total_seconds()) // 60
        sign = "-" if minutes < 0 else "+"
        numeric = f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
        return f"{text} {numeric} {self.zone or numeric}"


def _go_int(text: str) -> int | None:
    """strconv.ParseInt/ParseUint with base 0 (0x, 0o, 0b, and 0-prefixed octal), '_' removed as yaml.v3 does."""
    plain = text.replace("_", "")
    match = re.fullmatch(r"([-+]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)", plain)
    if not match:
        return None
    sign, digits = match.groups()
    lowered = digits.lower()
    if lowered.startswith(("0x", "0o", "0b")):
        number = int(lowered[2:], {"x": 16, "o": 8, "b": 2}[lowered[1]])
    elif len(digits) > 1 and digits.startswith("0"):
        number = int(digits, 8)
    else:
        number = int(digits)
    number = -number if sign == "-" else number
    return number if _INT64[0] <= number <= 2**64 - 1 else None


def _timestamp(text: str) -> Timestamp | None:
    match = _TIME.match(text)
    if not match:
        return None
    year, month, day = (int(match[i]) for i in (1, 2, 3))
    try:
        if match["sep"] is None:
            return Timestamp(_dt.datetime(year, month, day, tzinfo=_dt.UTC), "UTC")
        if match["sep"] == " " and match["zone"]:
            return None  # "2006-1-2 15:4:5" takes no zone
        if match["sep"] != " " and not match["zone"]:
            return None  # RFC 3339 requires one
        micro = int((match[8] or "0").ljust(9, "0")[:6])
        hour, minute, second = (int(match[i]) for i in (5, 6, 7))
        zone = match["zone"] or "Z"
        if zone == "Z":
            tz, name = _dt.UTC, "UTC"
        else:
            hours, minutes = int(zone[1:3]), int(zone[4:6])
            delta = _dt.timedelta(hours=hours, minutes=minutes)
            tz, name = _dt.timezone(-delta if zone[0] == "-" else delta), ""
            if not delta:
                name = "UTC"  # Go reports a zero offset as UTC
        return Timestamp(_dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=tz), name)
    except ValueError:
        return None


def resolve_plain(text: str) -> Any:
    """The value of an untagged plain scalar (gopkg.in/yaml.v3 resolve.go)."""
    if text in _WORDS:
        return _WORDS[text]
    if not text or text[0] not in "+-.0123456789":
        return text
    if text[0] == ".":
        return float(text) if _YAML_FLOAT.match(text) else text
    stamp = _timestamp(text)
    if stamp is not None:
        return stamp
    number = _go_int(text)
    if number is not None:
        return number
    plain = text.replace("_", "")
    if _YAML_FLOAT.match(plain):
        return float(plain)
    return text


def _tagged(tag: str, text: str, mark, name: str) -> Any:
    if tag == _STR:
        return text
    value = resolve_plain(text)
    kinds = {
        _INT: lambda v: isinstance(v, int) and not isinstance(v, bool),
        _FLOAT: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        _BOOL: lambda v: isinstance(v, bool),
        _NULL: lambda v: v is None,
        _TIMESTAMP: lambda v: isinstance(v, Timestamp),
    }
    if tag in kinds:
        if not kinds[tag](value):
            raise _error(mark, f"cannot decode {text!r} as a {tag.rsplit(':', 1)[-1]}", name)
        return float(value) if tag == _FLOAT else value
    return text  # unknown tags: yaml.v3 keeps the text


def _error(mark, problem: str, name: str | None = None) -> YamlError:
    return YamlError(f"{name or mark.name}:{mark.line + 1}:{mark.column + 1}: {problem}")


def _key_text(key: Any) -> str:
    """A map key as Pulumi names it (Go's fmt %v of the decoded key)."""
    return key if isinstance(key, str) else config_text(key)


class _Builder:
    """Builds values from ruamel's parse events, resolving scalars as yaml.v3 does."""

    def __init__(self, events, name: str):
        self.events = iter(events)
        self.name = name
        self.anchors: dict[str, Any] = {}

    def error(self, mark, problem: str) -> YamlError:
        return _error(mark, problem, self.name)

    def document(self) -> Any:
        for event in self.events:
            if isinstance(event, (ScalarEvent, MappingStartEvent, SequenceStartEvent, AliasEvent)):
                return self.node(event)[0]
        return None

    def node(self, event) -> tuple[Any, str]:
        """(value, source text for duplicate-key checks) of the node that starts with `event`."""
        if isinstance(event, AliasEvent):
            if event.anchor not in self.anchors:
                raise self.error(event.start_mark, f"unknown anchor '{event.anchor}' referenced")
            return self.anchors[event.anchor], f"*{event.anchor}"
        if isinstance(event, ScalarEvent):
            tag = str(event.tag) if event.tag is not None else None
            if tag is not None and tag != "!":
                value = _tagged(tag, event.value, event.start_mark, self.name)
            elif event.style is None and tag is None:
                value = resolve_plain(event.value)
            else:
                value = event.value
            text = event.value
        elif isinstance(event, SequenceStartEvent):
            value, text = [], ""
            if event.anchor:
                self.anchors[event.anchor] = value
            for item in self.events:
                if isinstance(item, SequenceEndEvent):
                    break
                value.append(self.node(item)[0])
        else:
            value, text = self.mapping(event), ""
        if event.anchor:
            self.anchors[event.anchor] = value
        return value, text

    def mapping(self, start: MappingStartEvent) -> dict:
        result: dict = {}
        if start.anchor:
            self.anchors[start.anchor] = result
        seen: dict[str, int] = {}
        merged: dict = {}
        for event in self.events:
            if isinstance(event, MappingEndEvent):
                break
            key, key_text = self.node(event)
            if isinstance(event, ScalarEvent):
                if key_text in seen:
                    raise self.error(
                        event.start_mark,
                        f'mapping key "{key_text}" already defined at line {seen[key_text]}',
                    )
                seen[key_text] = event.start_mark.line + 1
            value_event = next(self.events)
            value, _ = self.node(value_event)
            if key == _MERGE and isinstance(event, ScalarEvent) and event.style is None:
                sources = value if isinstance(value, list) else [value]
                if not all(isinstance(source, dict) for source in sources):
                    raise self.error(value_event.start_mark, "map merge requires map or sequence of maps as the value")
                for source in reversed(sources):
                    merged.update(source)
                continue
            result[_key_text(key)] = value
        result.update({k: v for k, v in merged.items() if k not in result})
        return result


def loads(text: str, name: str = "<string>") -> Any:
    """The first YAML document of `text` as the Pulumi CLI decodes it (None when empty)."""
    try:
        return _Builder(YAML(typ="safe", pure=True).parse(text), name).document()
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = " ".join(part for part in (error.context, error.problem) if part)
        if mark is None:
            raise YamlError(f"{name}: {problem}") from None
        raise YamlError(f"{name}:{mark.line + 1}:{mark.column + 1}: {problem}") from None
    except YAMLError as error:
        raise YamlError(f"{name}: {error}") from None


def load(path: Path | str, name: str | None = None) -> Any:
    """A YAML file as the Pulumi CLI reads it; errors name the file as `name` (default: the path).

    Parsed once per file version (the program, the checks and every test evaluation read Pulumi.yaml);
    each call gets its own copy."""
    path = Path(path)
    stat = path.stat()
    return copy.deepcopy(_load(path, name or str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=16)
def _load(path: Path, name: str, _mtime_ns: int, _size: int) -> Any:
    return loads(path.read_text(encoding="utf-8"), name)


def _go_float(value: float) -> str:
    """Go's encoding/json text of a float64: shortest form, an exponent only below 1e-6 or from 1e21."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"json: unsupported value: {value}")
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)  # shortest round-trip digits, with an exponent in both ranges below
    if 1e-6 <= abs(value) < 1e21:
        return format(Decimal(text), "f")
    mantissa, _, exponent = text.partition("e")
    number = int(exponent)
    # strconv's 'e' format has two exponent digits at least; encoding/json then shortens e-07 to e-7.
    return f"{mantissa}e-{-number}" if number < 0 else f"{mantissa}e+{number:02d}"


def _go_json(value: Any) -> str:
    """Go's json.Marshal: compact, map keys sorted, <, > and & escaped."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, Timestamp):
        value = str(value)
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
            text = text.replace(char, escaped)
        return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    if isinstance(value, list):
        return "[" + ",".join(_go_json(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_go_json(str(k))}:{_go_json(value[k])}" for k in sorted(value)) + "}"
    raise TypeError(f"unexpected YAML value {value!r}")


def config_text(value: Any) -> str:
    """The text the program receives for a config value read from YAML (object.MarshalString).

    A null (`key:` or `key: ~`) is the empty string, as the CLI passes it today (with a warning)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, Timestamp):
        return str(value)
    return _go_json(value)


def is_secure(value: Any) -> bool:
    """`{secure: <ciphertext>}`: a secret config value (encrypted in the stack file)."""
    return isinstance(value, dict) and set(value) == {"secure"} and isinstance(value["secure"], str)
