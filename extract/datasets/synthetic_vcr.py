"""VCR-style items of the synthetic scenes: token lists with object references, 4 answers and 4
rationales.

Objects are named by their shape word (the VCR ``objects`` classes), so a reference ``[i]`` reads
as "ball"; questions name an object by a reference only when its shape is unique in the scene.
Rationale k justifies answer k (the four are shuffled independently of the answers), and the
count rationales point at the counted objects with one multi-index reference, as VCR does for
groups of people. Questions reuse the VQA templates and paraphrases of :mod:`.synthetic_text`.
"""

from __future__ import annotations

import re
from typing import Any

from .synthetic_scenes import COLOURS, SHAPES, Scene, Thing
from .synthetic_text import (
    NUMBER_WORDS,
    QUESTIONS,
    Say,
    article,
    pick_count_filter,
    things_phrase,
    unique,
)

VCR_KINDS = ("colour", "shape", "count", "position")
COLOUR_THINGS = {
    "red": ("tomato", "strawberry", "fire truck"),
    "green": ("leaf", "frog", "cucumber"),
    "blue": ("blueberry", "clear sky", "swimming pool"),
    "yellow": ("banana", "sunflower", "lemon"),
    "purple": ("grape", "eggplant", "plum"),
    "orange": ("carrot", "pumpkin", "tangerine"),
}
SHAPE_EVIDENCE = {
    "box": "has four straight sides",
    "ball": "is round and solid",
    "pyramid": "has three corners",
    "ring": "has a hole in the middle",
}
COUNT_ANSWERS = ("There are none .", "There is one .", "There are two .", "There are three .")
QUADRANTS = tuple((v, h) for v in ("top", "bottom") for h in ("left", "right"))

Tokens = list[Any]  # words and lists of object indices


def fill(template: str, **slots: Any) -> Tokens:
    """Template -> VCR tokens; a list-valued slot becomes one reference token."""
    tokens: Tokens = []
    for token in re.findall(r"\{\w+\}|[\w']+|[^\w\s]", template):
        value = slots[token[1:-1]] if token.startswith("{") else token
        tokens.extend([value] if isinstance(value, list) else str(value).split())
    return tokens


def vcr_item(scene: Scene, kind: str, say: Say) -> dict[str, Any] | None:
    """A VCR record body of ``kind`` (see VCR_KINDS), or None if this scene cannot ask it."""
    say.begin()
    objects = [say.word(t.shape) for t in scene.things]
    built = BUILDERS[kind](scene, say)
    if built is None:
        return None
    question, answers, rationales, gold = built
    answer_order = say.rng.permutation(4).tolist()
    rationale_order = say.rng.permutation(4).tolist()
    return {
        "objects": objects,
        "question": question,
        "answer_choices": [answers[i] for i in answer_order],
        "answer_label": answer_order.index(gold),
        "rationale_choices": [rationales[i] for i in rationale_order],
        "rationale_label": rationale_order.index(gold),
        "question_type": kind,
        "shift": say.shift(),
    }


Built = tuple[Tokens, list[Tokens], list[Tokens], int] | None


def _named_thing(scene: Scene, say: Say, by: str) -> tuple[Thing, Tokens] | None:
    """A thing whose ``by`` (shape or colour) no other thing shares, so that it alone names it,
    and its object reference; None when the scene has none."""
    candidates = unique(scene, by)
    if not candidates:
        return None
    thing = say.prefer(candidates)
    say.mark(thing.pair)
    return thing, [scene.things.index(thing)]


def _colour(scene: Scene, say: Say) -> Built:
    named = _named_thing(scene, say, by="shape")
    if named is None:
        return None
    thing, ref = named
    others = [c for c in COLOURS if c != thing.colour]
    colours = [thing.colour] + [others[i] for i in say.rng.permutation(len(others))[:3].tolist()]
    question = fill(say.template(QUESTIONS, "colour"), obj=ref)
    answers = [fill("The {obj} is {colour} .", obj=ref, colour=say.word(c)) for c in colours]
    rationales = [
        fill("The {obj} looks like {thing} .", obj=ref, thing=article(say.choice(COLOUR_THINGS[c])))
        for c in colours
    ]
    return question, answers, rationales, 0


def _shape(scene: Scene, say: Say) -> Built:
    named = _named_thing(scene, say, by="colour")
    if named is None:
        return None
    thing, ref = named
    shapes = [thing.shape] + [s for s in SHAPES if s != thing.shape]
    question = fill(say.template(QUESTIONS, "shape"), colour=say.word(thing.colour))
    answers = [fill("It is {shape} .", shape=article(say.word(s))) for s in shapes]
    rationales = [
        fill("The {obj} {evidence} .", obj=ref, evidence=SHAPE_EVIDENCE[s]) for s in shapes
    ]
    return question, answers, rationales, 0


def _count(scene: Scene, say: Say) -> Built:
    attribute, value, matched = pick_count_filter(scene, say)
    question = fill(
        say.template(QUESTIONS, "count"), things=things_phrase(say, attribute, value, 2)
    )
    answers = [fill(text) for text in COUNT_ANSWERS]
    rationales = []
    for number in range(len(COUNT_ANSWERS)):
        if number == 0:
            rationales.append(fill("I see nothing like that ."))
        elif number == len(matched):
            rationales.append(fill("I see {objs} .", objs=list(matched)))
        elif number <= len(scene.things):
            chosen = say.rng.choice(len(scene.things), size=number, replace=False)
            rationales.append(fill("I see {objs} .", objs=sorted(chosen.tolist())))
        else:
            rationales.append(fill("I see {number} of them .", number=NUMBER_WORDS[number]))
    return question, answers, rationales, len(matched)


def _position(scene: Scene, say: Say) -> Built:
    named = _named_thing(scene, say, by="shape")
    if named is None:
        return None
    thing, ref = named
    horizontal, vertical = thing.sides(scene.size)
    question = fill(say.template(QUESTIONS, "position"), obj=ref)
    answers = [fill("In the {v} {h} .", v=v, h=h) for v, h in QUADRANTS]
    rationales = [
        fill("The {obj} is closer to the {v} edge and the {h} edge .", obj=ref, v=v, h=h)
        for v, h in QUADRANTS
    ]
    return question, answers, rationales, QUADRANTS.index((vertical, horizontal))


BUILDERS = {"colour": _colour, "shape": _shape, "count": _count, "position": _position}
