"""Perturbations of a text and what they do to a classifier: character-level typos, and the faithfulness of
per-word evidence (ERASER's comprehensiveness and sufficiency, DeYoung et al. 2020).

Words are whitespace-separated pieces of the text, so every classifier (whatever its tokenizer) is perturbed and
explained on the same units; a reading's per-token evidence is summed into its words first (``word_evidence``).
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Sequence

from textdiff_core.errors import TextdiffError

TYPO_EDITS = ("swap", "delete", "insert", "substitute")  # DeepWordBug's four character edits (Gao et al. 2018)
FRACTIONS = (0.05, 0.10, 0.20)  # ERASER's top-k% of the evidence, removed or kept alone


def typos(text: str, rate: float, seed: int = 0) -> tuple[str, list[int]]:
    """``text`` with one character edit in round(rate x words) of its words of two or more letters, chosen at
    random (seeded): swap two neighbours, delete one, insert one, or substitute one, each equally likely. Returns
    the new text and the indices of the words changed. Whitespace between words is kept as it was."""
    if not 0 <= rate <= 1:
        raise TextdiffError(f"the typo rate must be in [0, 1], got {rate}")
    pieces = text.split(" ")
    eligible = [i for i, w in enumerate(pieces) if sum(c.isalpha() for c in w) >= 2]
    rng = random.Random(seed)
    chosen = sorted(rng.sample(eligible, round(rate * len(eligible))))
    for i in chosen:
        pieces[i] = _edit(pieces[i], rng)
    return " ".join(pieces), chosen


def _edit(word: str, rng: random.Random) -> str:
    """One DeepWordBug edit at a letter of ``word`` (the word always changes)."""
    letters = [j for j, c in enumerate(word) if c.isalpha()]
    kind = rng.choice(TYPO_EDITS)
    j = rng.choice(letters[:-1]) if kind == "swap" else rng.choice(letters)
    if kind == "swap":
        k = next((x for x in letters if x > j), j)
        if word[j] == word[k]:  # swapping equal letters changes nothing: substitute instead
            kind = "substitute"
        else:
            return word[:j] + word[k] + word[j + 1:k] + word[j] + word[k + 1:]
    if kind == "delete":
        return word[:j] + word[j + 1:]
    new = rng.choice([c for c in string.ascii_lowercase if c != word[j].lower()])
    if kind == "insert":
        return word[:j] + new + word[j:]
    return word[:j] + (new.upper() if word[j].isupper() else new) + word[j + 1:]


def word_evidence(text: str, spans: Sequence[tuple[int, int]], values: Sequence[float]) -> list[float]:
    """Per-token evidence summed into the text's words: token i covers characters ``spans[i]`` of ``text`` (a
    tokenizer's offset mapping) and adds ``values[i]`` to every word it overlaps."""
    starts, position = [], 0
    for word in text.split(" "):
        starts.append((position, position + len(word)))
        position += len(word) + 1
    out = [0.0] * len(starts)
    for (a, b), v in zip(spans, values, strict=True):
        for w, (s, e) in enumerate(starts):
            if a < e and s < b:
                out[w] += float(v)
    return out


def faithfulness(probability: Callable[[str], float], text: str, evidence: Sequence[float],
                 fractions: Sequence[float] = FRACTIONS, seed: int = 0) -> dict:
    """ERASER's comprehensiveness and sufficiency of per-word ``evidence`` (higher: speaks more for the predicted
    class) for one text: ``probability(text)`` is the classifier's probability of the class it predicts on the
    whole text. For each fraction f, the top ceil(f x words) words by evidence are removed (comprehensiveness:
    p(text) - p(text without them); larger is more faithful) or kept alone (sufficiency: p(text) - p(only them);
    smaller is more faithful), beside the same count of words drawn at random (seeded)."""
    words = text.split(" ")
    if len(words) != len(evidence):
        raise TextdiffError(f"{len(evidence)} evidence values for {len(words)} words")
    full = probability(text)
    rng = random.Random(seed)
    out = {"p_full": full}
    for f in fractions:
        count = max(1, -(-round(f * len(words) * 1e6) // 1_000_000))  # ceil(f * words), robust to float error
        top = set(sorted(range(len(words)), key=lambda i: -evidence[i])[:count])
        drawn = set(rng.sample(range(len(words)), count))
        row = {}
        for name, chosen in (("evidence", top), ("random", drawn)):
            row[f"{name}_comprehensiveness"] = full - probability(" ".join(w for i, w in enumerate(words)
                                                                          if i not in chosen))
            row[f"{name}_sufficiency"] = full - probability(" ".join(w for i, w in enumerate(words) if i in chosen))
        out[f"{round(100 * f)}"] = row | {"words": count}
    return out
