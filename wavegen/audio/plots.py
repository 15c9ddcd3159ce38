"""matplotlib figures, and text from user data drawn on them in any script.

A title can come from anything a user names: a label folder, a recording, a run (``你好``,
``مرحبا``, ``नमस्ते``, ``🎵``). matplotlib draws with one font (DejaVu Sans by default), which has
no Chinese, Devanagari or emoji: each missing character is drawn as a box and warned about on
stderr ("Glyph 20320 missing from font(s) DejaVu Sans"), once per character and call.

``set_title`` avoids both. A character the default font lacks is drawn with an installed font
that has it (matplotlib takes a list of families and falls back along it, character by
character); one that no installed font has becomes a readable escape, ``U+4F60``, never a box.
Titles are plain text: a ``$`` in a file name is not mathtext, and ``text.usetex`` in a user's
matplotlibrc does not send a title through LaTeX.

Every figure wavegen draws comes from ``figure``: the spectrogram PNG beside each WAV
(``artifacts``), training's periodic samples (``monitor``, through ``artifacts``) and the
report's curves and spectrograms (``report``).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Callable, Sequence

# Never fallbacks: matplotlib's Last Resort font (3.10+) "has" every character, as a box naming
# its block (the very boxes to avoid); STIXNonUnicode and the TeX fonts matplotlib ships for
# mathtext (cmr10, cmsy10, ...) map character codes to glyphs that are not those characters.
NOT_FALLBACKS = re.compile(r"Last Resort High-Efficiency|STIXNonUnicode|cm[a-z]+10")


UNDRAWABLE = ("Cc", "Cs", "Co", "Cn", "Zl", "Zp")  # controls, lone surrogates, private use, unassigned


def invisible(char: str) -> bool:
    """Whether ``char`` is never drawn itself, only shapes its neighbours (a joiner, a direction
    mark, a variation selector): left out when no font has it, since an escape would show what
    is meant to be invisible."""
    code = ord(char)
    return unicodedata.category(char) == "Cf" or 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF


def figure(width: float, height: float, dpi: int = 100):
    """A matplotlib ``Figure`` of ``width`` × ``height`` inches drawn off screen (no display, no
    pyplot state shared with a caller's own figures)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=dpi)


def escape(char: str) -> str:
    """The readable stand-in for a character no font can draw: ``U+4F60``."""
    return f"U+{ord(char):04X}"


def drawable(text: str, has: Callable[[str | None, str], bool], fallbacks: Sequence[str]) -> tuple[str, list[str]]:
    """``text`` made drawable, and the fallback families needed to draw it.

    ``has(family, char)`` says whether a family's font has a character (family None: the
    default font); ``fallbacks`` are the families to try, in order of preference. A character
    the default font or a family already chosen has is kept as it is; else the first fallback
    that has it is chosen. A character that no font has, a control character, and a combining
    mark on an escaped character become ``U+XXXX`` (neighbouring escapes one space apart); an
    invisible one (a joiner, a variation selector) that no font has is left out."""
    chosen: list[str] = []
    parts: list[str] = []
    escaped_last = False
    for char in text:
        category = unicodedata.category(char)
        drawn = category not in UNDRAWABLE and not (escaped_last and category.startswith("M"))
        if drawn and not any(has(family, char) for family in [None, *chosen]):
            found = next((family for family in fallbacks if has(family, char)), None)
            if found is not None:
                chosen.append(found)
            drawn = found is not None
        if drawn:
            parts.append(char)
        elif invisible(char):
            continue
        else:
            parts.append((" " if escaped_last else "") + escape(char))
        escaped_last = not drawn
    return "".join(parts), chosen


def set_title(axes, text: str, **kwargs) -> None:
    """``axes.set_title(text)`` for text from user data, in any script: drawn with installed
    fonts that have its characters, ``U+XXXX`` for those none has; never mathtext or LaTeX."""
    shown, fallbacks = drawable(text, _has, _fallback_families())
    if fallbacks:
        kwargs["fontfamily"] = [*_default_families(), *fallbacks]
    axes.set_title(shown, parse_math=False, usetex=False, **kwargs)


def _default_families() -> list[str]:
    import matplotlib

    family = matplotlib.rcParams["font.family"]
    return [family] if isinstance(family, str) else list(family)


def _has(family: str | None, char: str) -> bool:
    """Whether the installed font matplotlib picks for ``family`` (None: the default) has ``char``."""
    return ord(char) in _charmap(family)


@lru_cache(maxsize=None)
def _fallback_families() -> tuple[str, ...]:
    """Families of the installed fonts matplotlib knows that have a regular face (upright, normal
    weight and width: what a title asks for, so matplotlib picks it without a word on stderr),
    sans-serif ones first (they match the default's look), then by name so that a title is drawn
    the same way on every run."""
    from matplotlib import font_manager

    names = {
        entry.name
        for entry in font_manager.fontManager.ttflist
        if entry.style == "normal"
        and entry.stretch == "normal"
        and _weight(entry.weight, font_manager.weight_dict) == 400
        and not NOT_FALLBACKS.fullmatch(entry.name)
    }
    return tuple(sorted(names, key=lambda name: ("sans" not in name.lower(), name)))


def _weight(weight: str | int, names: dict[str, int]) -> str | int:
    """A font's weight as a number where it is named (``bold``: 700); a name unknown stays."""
    return names.get(weight, weight) if isinstance(weight, str) else weight


@lru_cache(maxsize=None)
def _charmap(family: str | None) -> frozenset[int]:
    """The code points that the font matplotlib picks for ``family`` (None: the default family)
    can draw; empty for a font it cannot draw at any size (a bitmap colour-emoji font)."""
    from matplotlib import font_manager

    wanted = _default_families() if family is None else [family]
    try:
        path = font_manager.findfont(font_manager.FontProperties(family=wanted), fallback_to_default=False)
        font = font_manager.get_font(path)
        font.set_size(12, 72)  # raises for a font of fixed bitmap sizes only
        return frozenset(font.get_charmap())
    except (ValueError, RuntimeError, OSError):
        return frozenset()
