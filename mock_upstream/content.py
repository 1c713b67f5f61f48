"""What the stand-in serves: the /politics page, the 301 page and small error bodies.

The /politics page is deterministic (same bytes in every run and every process) so a suite can
compare lengths or digests end to end through the mesh. Its default length, 151654 bytes, is the
Content-Length the Istio egress-gateway docs show for edition.cnn.com/politics.
"""

from __future__ import annotations

import functools

POLITICS_PATH = "/politics"
POLITICS_BYTES = 151654
POLITICS_MARKER = b"<!-- mock_upstream: edition.cnn.com/politics stand-in -->"

_HEAD = (
    b'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
    b"<title>Politics - CNN</title>\n</head>\n<body>\n" + POLITICS_MARKER + b"\n<h1>Politics</h1>\n"
)
_TAIL = b"</body>\n</html>\n"
_WORDS = (
    b"senate house committee hearing vote budget bill amendment governor campaign election "
    b"poll debate caucus primary delegate filibuster veto override majority minority whip"
).split()

MIN_POLITICS_BYTES = len(_HEAD) + len(_TAIL)


@functools.lru_cache(maxsize=4)
def politics_page(size: int = POLITICS_BYTES) -> bytes:
    """An HTML page of exactly `size` bytes (at least MIN_POLITICS_BYTES)."""
    if size < MIN_POLITICS_BYTES:
        raise ValueError(f"the /politics page needs at least {MIN_POLITICS_BYTES} bytes, got {size}")
    room = size - len(_HEAD) - len(_TAIL)
    stories: list[bytes] = []
    used = 0
    number = 0
    while True:
        number += 1
        # Rotating the word list per story keeps the page varied without any randomness.
        words = b" ".join(_WORDS[(number + i) % len(_WORDS)] for i in range(40))
        story = b'<article id="story-%d"><h2>Story %d</h2><p>%s.</p></article>\n' % (number, number, words)
        if used + len(story) > room:
            break
        stories.append(story)
        used += len(story)
    padding = room - used  # whitespace is inert in HTML; it brings the page to the exact size
    filler = b" " * (padding - 1) + b"\n" if padding else b""
    page = _HEAD + b"".join(stories) + filler + _TAIL
    assert len(page) == size
    return page


def _html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def moved_page(location: str) -> bytes:
    """The small body a 301 carries, like the real site's."""
    href = _html_escape(location)
    return (
        "<html><head><title>301 Moved Permanently</title></head><body>"
        f'<h1>Moved Permanently</h1><p>The document has moved <a href="{href}">here</a>.</p>'
        "</body></html>\n"
    ).encode("latin-1", "replace")


def text_page(message: str) -> bytes:
    return (message + "\n").encode("latin-1", "replace")
