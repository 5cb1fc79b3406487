"""What a refused name should have been: ``did you mean llama-3-8b?`` (as git and argparse users
expect), instead of a list of every known name. One place for models/ and wsim/ alike (models/ never
imports wsim; wsim may import models).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# difflib's similarity ratio a known name must reach to be offered, and how many are offered.
# *assumption*: difflib's own default cutoff (0.6), lowered a little so that a dropped hyphen in a
# short name (``cs3-64`` for ``cs3_64``) or a forgotten size suffix still finds its name.
CUTOFF = 0.5
MAX_SUGGESTIONS = 3
# a refusal lists every known name only when there are at most this many (a short list helps more
# than a guess; the 41 zoo names do not)
LIST_ALL_UP_TO = 12


# only names about as close as the best one are offered (ratio within this of the best's):
# ``llama3-8b`` gets llama-3-8b alone, not llama-3-70b too. *assumption*: chosen by reading the
# suggestions for typical slips (tests/models/test_suggest.py pins them).
MARGIN = 0.08


def close(name: str, known: Iterable[str], n: int = MAX_SUGGESTIONS) -> list[str]:
    """The known names closest to ``name``, best first (case-insensitive), at most ``n``."""
    by_lower = {k.lower(): k for k in known}
    target = str(name).lower()
    scored = sorted(((difflib.SequenceMatcher(None, target, k).ratio(), k) for k in by_lower),
                    key=lambda rk: (-rk[0], rk[1]))
    scored = [(r, k) for r, k in scored if r >= CUTOFF]
    if not scored:
        return []
    best = scored[0][0]
    return [by_lower[k] for r, k in scored[:n] if r >= best - MARGIN]


def hint(name: str, known: Iterable[str], where: str = "", listing: str = "known") -> str:
    """The end of a one-line refusal: ``did you mean a or b?``; with no close name, every known name
    (after ``listing:``) when there are few, else how many there are and ``where`` they are listed."""
    known = sorted(set(known))
    matches = close(name, known)
    if matches:
        return "did you mean " + " or ".join(matches) + "?"
    if len(known) <= LIST_ALL_UP_TO:
        return f"{listing}: " + ", ".join(known)
    return f"none of the {len(known)} known names is close" + (f" (listed in {where})" if where else "")
