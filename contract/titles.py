"""Title normalisation shared by the pipeline (search keys) and the API (queries)."""

from __future__ import annotations

import re
import unicodedata

_ARTICLE = re.compile(
    r"^(?P<rest>.+), (?P<art>The|A|An|Les|La|Le|L'|Il|Das|Der|Die|El|Los|Las)$", re.I
)
_NON_WORD = re.compile(r"[^a-z0-9]+")


def fold(text: str) -> str:
    """Lower-case ASCII with accents removed and punctuation turned into single spaces."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    ascii_text = "".join(
        c if ord(c) < 128 else " " for c in decomposed if not unicodedata.combining(c)
    )
    return _NON_WORD.sub(" ", ascii_text.lower()).strip()


def display_name(name: str) -> str:
    """MovieLens puts articles last ("Matrix, The"); put them back in front ("The Matrix")."""
    name = (name or "").strip()
    m = _ARTICLE.match(name)
    if not m:
        return name
    art = m.group("art")
    return f"{art}{'' if art.endswith(chr(39)) else ' '}{m.group('rest')}"


def search_key(name: str) -> str:
    """The folded display name: what title search matches against."""
    return fold(display_name(name))
