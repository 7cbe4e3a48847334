"""Referring expressions and their target-related cues (PCNet's progressive comprehension).

PCNet decomposes each referring expression offline with an LLM into short target-related
phrases ("cues"), fed one per stage of its Conditional Referring Module. Two sources here:

* **Synthetic benchmark** (:func:`synthetic_references`): its captions follow one grammar,
  ``a <phrase> <relation> a <phrase> ...``, so every mentioned entity yields a referring expression
  (the entity plus its relation to a neighbouring entity: "a red circle left of a blue square", or
  for the second entity "a blue square right of a red circle") and the cues are the expression's
  category ("circle"), attribute ("red") and relation ("left of a blue square") parts.
* **Real data** (:func:`load_cues`): a JSONL file, one expression per line::

      {"expression": "man in red shirt holding a racket", "cues": ["a man", "red shirt", "holding a racket"]}

  ``expression`` (non-empty string) is matched to a sample's phrase after lower-casing and
  collapsing whitespace; ``cues`` is a list of 1 to 16 non-empty strings in stage order; an
  optional ``image_id`` is kept for the reader's bookkeeping and ignored. Blank lines are skipped.
  Parsing is plain ``json.loads`` (no code runs from the file); every malformed line is reported
  with its line number.

Fewer cues than stages are padded by repeating the last one (PCNet duplicates phrases when the
LLM returns fewer than it needs); extra cues are dropped.
"""
from __future__ import annotations

import re
from typing import Dict, List, Sequence, Tuple

from dapo_fast.safe_io import jsonl_error, jsonl_objects

__all__ = ["CueFileError", "normalise", "load_cues", "fit_cues", "synthetic_references", "INVERSE_RELATIONS"]

MAX_CUES = 16
MAX_LINE_CHARS = 65536  # a cue line is a sentence and a few phrases
# the relation read from the other entity's side ("A left of B" -> "B right of A")
INVERSE_RELATIONS = {"left of": "right of", "right of": "left of", "above": "below", "below": "above",
                     "and": "and", "near": "near"}
_ARTICLE = re.compile(r"\s+(a|an|the)$")
_SPACE = re.compile(r"\s+")


class CueFileError(ValueError):
    pass


def normalise(text: str) -> str:
    """The key an expression is looked up by: lower case, single spaces, no outer spaces."""
    return _SPACE.sub(" ", text.strip().lower())


def load_cues(path: str) -> Dict[str, List[str]]:
    """{normalised expression: cues} from a JSONL file (format in the module docstring)."""
    what = "cues file"
    out: Dict[str, List[str]] = {}
    first_line: Dict[str, int] = {}
    for number, record in jsonl_objects(path, what, CueFileError, MAX_LINE_CHARS):
        def bad(reason: str) -> CueFileError:
            return jsonl_error(CueFileError, what, path, number, reason)

        unknown = sorted(set(record) - {"expression", "cues", "image_id"})
        if unknown:
            raise bad(f"unknown key(s) {unknown} (keys: expression, cues, image_id)")
        expression, cues = record.get("expression"), record.get("cues")
        if not isinstance(expression, str) or not expression.strip():
            raise bad(f"'expression' must be a non-empty string, got {expression!r}")
        if not isinstance(cues, list) or not 1 <= len(cues) <= MAX_CUES:
            raise bad(f"'cues' must be a list of 1 to {MAX_CUES} strings, got {cues!r}")
        for i, cue in enumerate(cues):
            if not isinstance(cue, str) or not cue.strip():
                raise bad(f"cues[{i}] must be a non-empty string, got {cue!r}")
        key = normalise(expression)
        cues = [c.strip() for c in cues]
        if key in out and out[key] != cues:
            raise bad(f"expression {expression!r} already has different cues (line {first_line[key]})")
        out[key] = cues
        first_line.setdefault(key, number)
    return out


def fit_cues(cues: Sequence[str], stages: int) -> List[str]:
    """Exactly ``stages`` cues: the first ones, the last repeated when there are fewer."""
    if not cues:
        raise ValueError("an expression needs at least one cue")
    cues = list(cues[:stages])
    return cues + [cues[-1]] * (stages - len(cues))


def _relation(caption: str, spans: Sequence[Tuple[int, int]], e: int) -> str:
    """The relation words between entity e-1 and entity e ("left of"), without the article."""
    text = caption[spans[e - 1][1]:spans[e][0]].strip().lower()
    return _ARTICLE.sub("", " " + text).strip()


def synthetic_references(caption: str, phrases: Sequence[str], spans: Sequence[Tuple[int, int]]
                         ) -> List[Tuple[str, List[str]]]:
    """One (expression, [category, attribute, relation] cues) per entity of a synthetic caption.

    The relation cue of an entity with no neighbour (a one-entity caption) is the whole phrase;
    a one-word phrase is its own attribute cue. A relation word missing from
    ``INVERSE_RELATIONS`` is read as symmetric."""
    out = []
    for e, phrase in enumerate(phrases):
        words = phrase.split()
        category = words[-1]
        attribute = " ".join(words[:-1]) or phrase
        if len(phrases) == 1:
            out.append((f"a {phrase}", [category, attribute, phrase]))
            continue
        if e == 0:
            relation, other = _relation(caption, spans, 1), phrases[1]
        else:
            forward = _relation(caption, spans, e)
            relation, other = INVERSE_RELATIONS.get(forward, forward), phrases[e - 1]
        out.append((f"a {phrase} {relation} a {other}", [category, attribute, f"{relation} a {other}"]))
    return out
