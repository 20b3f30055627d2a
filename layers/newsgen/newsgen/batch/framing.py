"""The one framing of every file a batch job writes: one JSON value per line, lines ended by b"\\n" alone.

No character can break it: `json.dumps` escapes every control character, and the few characters that some
line readers (Python's str.splitlines, JavaScript's old JSON.parse) take as line ends — U+0085, U+2028,
U+2029 — are escaped too, as are lone surrogates, which UTF-8 cannot encode. Readers split on b"\\n" only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

_UNSAFE = re.compile("[\u0085\u2028\u2029\ud800-\udfff]")


def _escape(match: re.Match) -> str:
    return f"\\u{ord(match.group()):04x}"


def json_line(value: Any) -> bytes:
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (_UNSAFE.sub(_escape, text) + "\n").encode("utf-8")


def json_lines(values: Iterable[Any]) -> bytes:
    return b"".join(json_line(v) for v in values)


def read_json_lines(data: bytes) -> Iterator[Any]:
    for raw in data.split(b"\n"):
        if raw:
            yield json.loads(raw)
