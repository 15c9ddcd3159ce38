"""How ``prepare`` words its account of the files: names listed a few at a time, counts with
their nouns, and the notes about files it prepared although they were not quite as asked."""

from __future__ import annotations


def some(names: list[str], shown: int = 5) -> str:
    """'a', 'a and b', 'a, b, c, d, e and 7 more'."""
    if len(names) <= shown:
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return ", ".join(names[:shown]) + f" and {len(names) - shown} more"


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word if n == 1 else words or word + 's'}"


def mono_note(channel: str, names: list[str]) -> str:
    """One line for the mono files that ``--channel N`` (N >= 1) could not apply to: a mono file
    has channel 0 only, so it is used as it is (skipping it would drop the mono part of a
    dataset that mixes mono and stereo recordings)."""
    return (
        f"note: --channel {channel} does not apply to {plural(len(names), 'mono file')} ({some(names)}): "
        "each has one channel, used as it is"
    )
