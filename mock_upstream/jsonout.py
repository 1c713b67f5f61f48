"""A JSON encoder for the control API and the ready line.

Debian's python3-minimal, which the container image is built from, ships no `json` module, so the
stand-in writes JSON itself. Output matches `json.dumps(value)` with its defaults (ASCII only,
", " and ": " separators); the tests hold it to that.
"""

from __future__ import annotations

import re

# json.dumps(ensure_ascii=True) escapes exactly these: quote, backslash, anything outside " ".."~".
_NEEDS_ESCAPE = re.compile(r'["\\]|[^ -~]')
_SHORT = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _escape_char(match: re.Match) -> str:
    ch = match.group(0)
    short = _SHORT.get(ch)
    if short is not None:
        return short
    code = ord(ch)
    if code > 0xFFFF:  # outside the BMP: a UTF-16 surrogate pair, as JSON requires
        code -= 0x10000
        return f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def _string(text: str) -> str:
    return '"' + _NEEDS_ESCAPE.sub(_escape_char, text) + '"'


def dumps(value: object) -> str:
    """Encode dicts (str keys), lists, tuples, str, int, float, bool and None."""
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts)


def _encode(value: object, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        # JSON has no NaN or infinities; nothing the stand-in records produces them.
        out.append(float.__repr__(value) if value == value and abs(value) != float("inf") else "null")
    elif isinstance(value, dict):
        out.append("{")
        first = True
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be str, not {type(key).__name__}")
            if not first:
                out.append(", ")
            first = False
            out.append(_string(key))
            out.append(": ")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(", ")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")
