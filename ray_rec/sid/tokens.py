"""SID tokens: integer codes <-> token strings, rendered only when prompts are built.

Level ``l`` code ``c`` is the token ``<{letter}_{c}>`` with letters a, b, c, d, ... (MiniOneRec's
format: ``<a_236><b_231><c_226>``); a de-duplication level is simply one more level (``<d_1>``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

LEVEL_LETTERS = "abcdefghij"
_TOKEN = re.compile(r"<([a-j])_(\d+)>")


def sid_token(level: int, code: int) -> str:
    """(level, code) -> ``<a_12>``."""
    if not 0 <= level < len(LEVEL_LETTERS):
        raise ValueError(f"level {level} out of range 0..{len(LEVEL_LETTERS) - 1}")
    if code < 0:
        raise ValueError(f"code must be non-negative, got {code}")
    return f"<{LEVEL_LETTERS[level]}_{code}>"


def render_sid(codes: Sequence[int]) -> str:
    """[12, 3, 200] -> ``<a_12><b_3><c_200>``."""
    return "".join(sid_token(level, int(c)) for level, c in enumerate(codes))


def parse_sid(text: str | Sequence[str]) -> list[int]:
    """``<a_12><b_3><c_200>`` (or a list of such tokens) -> [12, 3, 200]; levels must run a, b, c, ..."""
    joined = text if isinstance(text, str) else "".join(text)
    matches = list(_TOKEN.finditer(joined))
    if not matches or "".join(m.group(0) for m in matches) != joined.strip():
        raise ValueError(f"not a SID token string: {joined!r}")
    codes = []
    for level, m in enumerate(matches):
        if m.group(1) != LEVEL_LETTERS[level]:
            raise ValueError(f"SID {joined!r}: level {level} should use letter {LEVEL_LETTERS[level]!r}")
        codes.append(int(m.group(2)))
    return codes


def vocabulary(codebook_sizes: Sequence[int]) -> list[str]:
    """Every SID token for the given per-level codebook sizes, level by level."""
    return [sid_token(level, c) for level, size in enumerate(codebook_sizes) for c in range(size)]
