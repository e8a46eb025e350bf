"""Perturbations of a text and what they do to a classifier: character-level typos, a word-substitution attack of
the BAE / BERT-Attack kind, and the faithfulness of per-word evidence (ERASER's comprehensiveness and sufficiency,
DeYoung et al. 2020).

Words are whitespace-separated pieces of the text, so every classifier (whatever its tokenizer) is perturbed and
explained on the same units; a reading's per-token evidence is summed into its words first (``word_evidence``).
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

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
    if kind == "swap":  # two neighbouring letters that differ (else the word would not change)
        pairs = [j for j in letters if j + 1 < len(word) and word[j + 1].isalpha() and word[j] != word[j + 1]]
        if pairs:
            j = rng.choice(pairs)
            return word[:j] + word[j + 1] + word[j] + word[j + 2:]
        kind = "substitute"
    j = rng.choice(letters)
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


@dataclass
class Attack:
    """One word-substitution attack on one text: what it changed and what the classifier said before and after."""

    original: str
    adversarial: str  # the text after the last substitution tried (== original when nothing was accepted)
    label: int  # the class the attack moves away from (the true one)
    success: bool  # the classifier's decision left ``label``
    changed: list[int] = field(default_factory=list)  # word indices substituted, in the order they were
    p_before: float = 0.0  # P(label | original)
    p_after: float = 0.0  # P(label | adversarial)
    queries: int = 0  # calls of the classifier

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("original", "adversarial", "label", "success", "changed", "p_before",
                                              "p_after", "queries")}


def substitution_attack(probabilities: Callable[[list[str]], list[list[float]]], text: str, label: int,
                        propose: Callable[[list[str], int], list[str]], similar: Callable[[str, str], bool],
                        max_words: int = 5, skip: Collection[str] = ()) -> Attack:
    """A greedy word-substitution attack in the manner of BAE-R (Garg & Ramakrishnan 2020) and BERT-Attack (Li et
    al. 2020), against ``probabilities(texts) -> [P(c | text) per class]`` (the attacked classifier, batched):

      1. rank the words by importance: the drop in P(label) when the word alone is deleted;
      2. in that order, ask ``propose(words, i)`` (a masked LM's replacements for word i) for candidates, keep those
         for which ``similar(original, candidate text)`` holds (a sentence-similarity constraint), and substitute the
         one giving the lowest P(label); stop as soon as another class is more probable than ``label`` (a tie is no
         success), or after ``max_words``
         substitutions. Words in ``skip`` (e.g. stop words) are never replaced; a substitution that does not lower
         P(label) is not made.
    """
    words = text.split(" ")
    queries = 0

    def ask(texts: list[str]) -> list[list[float]]:
        nonlocal queries
        queries += len(texts)
        return probabilities(texts)

    p_before = ask([text])[0][label]
    open_ = [i for i, w in enumerate(words) if w and w.lower().strip(".,!?;:\"'()") not in skip]
    deleted = ask([" ".join(w for j, w in enumerate(words) if j != i) for i in open_]) if open_ else []
    order = [i for _, i in sorted(zip([p_before - d[label] for d in deleted], open_, strict=True), key=lambda x: -x[0])]
    current, p_now, changed = list(words), p_before, []
    for i in order:
        if len(changed) >= max_words:
            break
        candidates = [c for c in dict.fromkeys(propose(current, i)) if c and c != current[i] and " " not in c]
        texts = [" ".join(current[:i] + [c] + current[i + 1:]) for c in candidates]
        texts = [t for t in texts if similar(text, t)]
        if not texts:
            continue
        probs = ask(texts)
        best = min(range(len(texts)), key=lambda j: probs[j][label])
        if probs[best][label] >= p_now:
            continue
        current, p_now = texts[best].split(" "), probs[best][label]
        changed.append(i)
        if max(p for c, p in enumerate(probs[best]) if c != label) > p_now:  # another class now leads
            return Attack(text, " ".join(current), label, True, changed, p_before, p_now, queries)
    return Attack(text, " ".join(current), label, False, changed, p_before, p_now, queries)
