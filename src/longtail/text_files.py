"""Text files people edit (recipes, split lists): UTF-8, with or without a byte-order mark.

Kept apart from :mod:`longtail.io` so that reading a recipe imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from longtail.errors import LongtailError


def read_utf8_text(path: Path, error: Callable[[int, int], str]) -> str:
    """``path``'s text, decoded as UTF-8 with a leading byte-order mark dropped (CRLF is left to
    the caller's ``splitlines`` or YAML). Other bytes raise ``LongtailError(error(line, byte))``:
    the 1-based line of the first undecodable byte, and that byte."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise LongtailError(error(line, data[err.start])) from None
