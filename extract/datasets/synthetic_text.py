"""Texts of the synthetic datasets: wording (templates, synonyms) and the VQA / SNLI-VE items.

Every text family has three training templates and three *paraphrases* used only on
``test_shifted``, so a student that keys on template words meets new sentence shapes there. On
``test_shifted`` half of the texts (``synonym_rate``) also swap base words for synonyms, chosen by
probing the text teacher (all-MiniLM-L6-v2, mean-pooled, cosine) in five carrier sentences: each
synonym below is nearer its own base word than any other base word in all five; the numbers are
the mean cosine to the base word and the mean margin over the nearest other base word.

    lime -> green 0.595 (+0.015)   violet -> purple 0.698 (+0.058)   peach -> orange 0.614 (+0.087)
    crate -> box 0.664 (+0.214)    sphere -> ball 0.698 (+0.164)
    triangle -> pyramid 0.608 (+0.122)   loop -> ring 0.578 (+0.113)

No synonym of red, blue or yellow passed (best: ruby +0.004, navy +0.014 but second in one
carrier, every yellow candidate negative; azure -0.031, cobalt -0.021, gold -0.071), so those keep
their base word. Answers and labels always use base words (the VQA answer vocabulary is built from
train + val). Each text records its ``question_type`` and the shifts it carries (``shift``:
``paraphrase``, ``synonym``, ``unseen_pair`` joined by ``+``, or ``none``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .synthetic_scenes import COLOURS, SHAPES, Pair, Scene, Thing

SYNONYMS = {
    "green": "lime", "purple": "violet", "orange": "peach",
    "box": "crate", "ball": "sphere", "pyramid": "triangle", "ring": "loop",
}  # fmt: skip
NUMBER_WORDS = ("no", "one", "two", "three")
MAX_COUNT = 3
COUNT_WEIGHTS = (1.0, 1.2, 2.5, 6.0)  # larger counts are possible in fewer scenes

# (training templates, test_shifted paraphrases); {obj} is an object's name (a VCR reference).
QUESTIONS = {
    "colour": (
        ("What color is the {obj}?", "Which color is the {obj}?",
         "What is the color of the {obj}?"),
        ("Which hue does the {obj} have?", "Tell me the colour of the {obj}.",
         "In what shade is the {obj} painted?"),
    ),
    "shape": (
        ("What shape is the {colour} object?", "What is the {colour} thing?",
         "Which shape does the {colour} object have?"),
        ("Name the form of the {colour} item.", "The {colour} item has which form?",
         "What kind of figure is {colour} here?"),
    ),
    "count": (
        ("How many {things} are there?", "How many {things} are in the picture?",
         "What is the number of {things}?"),
        ("Count the {things} in this image.", "What number of {things} appear here?",
         "Tell me how many {things} you notice."),
    ),
    "existence": (
        ("Is there {a_pair}?", "Is there {a_pair} in the picture?",
         "Does the picture show {a_pair}?"),
        ("Does this image contain {a_pair}?", "Is {a_pair} visible anywhere?",
         "Can one spot {a_pair} here?"),
    ),
    "position": (
        ("Where is the {obj}?", "In which part of the picture is the {obj}?",
         "Where can you find the {obj}?"),
        ("Whereabouts does the {obj} sit?", "Point out the region holding the {obj}.",
         "The {obj} lies in which corner?"),
    ),
}  # fmt: skip
HYPOTHESES = {
    "existence": (
        ("There is {a_pair}.", "The picture shows {a_pair}.", "{a_pair} is visible."),
        ("One can spot {a_pair} in the image.", "Somewhere in this image sits {a_pair}.",
         "This image contains {a_pair}."),
    ),
    "count": (
        ("The picture shows {count}.", "In the picture you see {count}.", "The scene has {count}."),
        ("This image contains {count}.", "One can count {count} in the image.",
         "Looking closely, you find {count}."),
    ),
    "position": (
        ("The {pair} is in the {side} half of the picture.", "The {pair} is on the {side} side.",
         "You can find the {pair} in the {side} half."),
        ("The {pair} sits toward the {side} of the image.", "Toward the {side} of this image "
         "lies the {pair}.", "The {pair} is placed at the {side}."),
    ),
    "property": (
        ("The {pair} is made of {material}.", "The {pair} is quite {quality}.",
         "The {pair} belongs to {owner}."),
        ("Someone built the {pair} out of {material}.", "The {pair} feels {quality}.",
         "The {pair} is owned by {owner}."),
    ),
}  # fmt: skip
# What a picture cannot show: the undecidable (neutral) hypotheses.
MATERIALS = ("wood", "plastic", "metal", "glass", "rubber")
QUALITIES = ("heavy", "expensive", "new", "old", "fragile", "warm")
OWNERS = ("a child", "a teacher", "the neighbour", "a painter")
BACKGROUND_WORDS = {
    "noise": "grainy", "gradient": "shaded", "stripes": "striped", "checks": "checked",
    "blotches": "blotchy",
}  # fmt: skip
OPPOSITE = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}
# Each question type 1/4 of a split, existence questions half yes and half no.
VQA_KINDS = ("colour", "shape", "count", "existence-yes", "count", "colour", "shape",
             "existence-no")  # fmt: skip
ANSWER_TYPES = {"colour": "other", "shape": "other", "count": "number", "existence": "yes/no"}
SNLI_TYPES = {
    "entailment": ("existence", "count", "position"),
    "contradiction": ("existence", "count", "position", "property"),
    "neutral": ("property",),
}


@dataclass
class Say:
    """The wording of one split; ``begin()`` starts a text and resets the shifts it records."""

    shifted: bool
    held_out: frozenset[Pair]
    rng: np.random.Generator
    synonym_rate: float = 0.5
    synonyms: bool = False
    tags: set[str] = field(default_factory=set)

    def begin(self) -> None:
        self.synonyms = self.shifted and bool(self.rng.random() < self.synonym_rate)
        self.tags = {"paraphrase"} if self.shifted else set()

    def word(self, base: str) -> str:
        if self.synonyms and base in SYNONYMS:
            self.tags.add("synonym")
            return SYNONYMS[base]
        return base

    def plural(self, shape: str) -> str:
        word = self.word(shape)
        return word + ("es" if word.endswith("x") else "s")

    def noun(self, plural: bool = True) -> str:
        word = "item" if self.shifted else "object"
        return word + "s" if plural else word

    def mark(self, pair: Pair) -> None:
        """Record that the text is about ``pair`` (an unseen combination on test_shifted)."""
        if pair in self.held_out:
            self.tags.add("unseen_pair")

    def pair(self, pair: Pair) -> str:
        self.mark(pair)
        return f"{self.word(pair[0])} {self.word(pair[1])}"

    def template(self, table: dict, kind: str) -> str:
        options = table[kind][int(self.shifted)]
        return options[int(self.rng.integers(len(options)))]

    def choice(self, options: list | tuple) -> Any:
        return options[int(self.rng.integers(len(options)))]

    def prefer(self, things: list[Thing]) -> Thing:
        """A thing to talk about; on test_shifted one of a held-out pair when there is one."""
        unseen = [t for t in things if t.pair in self.held_out] if self.shifted else []
        return self.choice(unseen or things)

    def shift(self) -> str:
        return "+".join(sorted(self.tags)) or "none"


def article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def sentence(text: str) -> str:
    return text[0].upper() + text[1:]


def unique(scene: Scene, attribute: str) -> list[Thing]:
    """Things whose colour (or shape) no other thing shares: nameable by it alone."""
    values = [getattr(t, attribute) for t in scene.things]
    return [t for t in scene.things if values.count(getattr(t, attribute)) == 1]


def count_filters(scene: Scene) -> list[tuple[str, str | None, list[int]]]:
    """(attribute, value, indices of matching things) for: all, each colour, each shape."""
    things = scene.things
    filters: list[tuple[str, str | None, list[int]]] = [("all", None, list(range(len(things))))]
    for attribute, values in (("colour", COLOURS), ("shape", SHAPES)):
        for value in values:
            matched = [i for i, t in enumerate(things) if getattr(t, attribute) == value]
            filters.append((attribute, value, matched))
    return filters


def pick_count_filter(scene: Scene, say: Say) -> tuple[str, str | None, list[int]]:
    """A filter and its matches; the count is drawn among those this scene can give, weighted so
    that over a split the answers 0..3 come out near-uniform (26/31/23/20 %): no count shortcut."""
    filters = count_filters(scene)
    counts = sorted({len(matched) for _, _, matched in filters})
    weights = np.array([COUNT_WEIGHTS[count] for count in counts])
    target = counts[int(say.rng.choice(len(counts), p=weights / weights.sum()))]
    attribute, value, matched = say.choice([f for f in filters if len(f[2]) == target])
    for index in matched:
        say.mark(scene.things[index].pair)
    return attribute, value, matched


def things_phrase(say: Say, attribute: str, value: str | None, count: int) -> str:
    """``objects`` / ``red objects`` / ``balls`` (singular when count is 1)."""
    plural = count != 1
    if attribute == "shape":
        return say.plural(value) if plural else say.word(value)
    noun = say.noun(plural)
    return noun if attribute == "all" else f"{say.word(value)} {noun}"


def absent_pair(scene: Scene, say: Say) -> Pair:
    """A pair the scene lacks: half the time a near miss (its colour or shape is present)."""
    present = {t.pair for t in scene.things}
    pool = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in present]
    if not say.shifted:
        pool = [pair for pair in pool if pair not in say.held_out]
    unseen = [pair for pair in pool if pair in say.held_out]
    if unseen and say.rng.random() < 0.5:
        return say.choice(unseen)
    near = [p for p in pool if any(p[0] == t.colour or p[1] == t.shape for t in scene.things)]
    return say.choice(near if near and say.rng.random() < 0.5 else pool)


def vqa_question(scene: Scene, kind: str, say: Say) -> dict[str, Any] | None:
    """One VQA question of ``kind`` (see VQA_KINDS), or None if this scene cannot ask it."""
    say.begin()
    question_type = kind.split("-")[0]
    template = say.template(QUESTIONS, question_type)
    if kind in ("colour", "shape"):
        other = "shape" if kind == "colour" else "colour"
        candidates = unique(scene, other)
        if not candidates:
            return None
        thing = say.prefer(candidates)
        say.mark(thing.pair)
        name = say.word(getattr(thing, other))
        question, answer = template.format(obj=name, colour=name), getattr(thing, kind)
        wrong = [v for v in (COLOURS if kind == "colour" else SHAPES) if v != answer]
    elif kind == "count":
        attribute, value, matched = pick_count_filter(scene, say)
        question = template.format(things=things_phrase(say, attribute, value, 2))
        answer = str(len(matched))
        wrong = [str(n) for n in range(MAX_COUNT + 1) if n != len(matched)]
    else:
        present = kind == "existence-yes"
        pair = say.prefer(list(scene.things)).pair if present else absent_pair(scene, say)
        question = template.format(a_pair=article(say.pair(pair)))
        answer, wrong = ("yes", ["no"]) if present else ("no", ["yes"])
    return {
        "question": sentence(question),
        "answer": answer,
        "wrong": wrong,
        "question_type": question_type,
        "answer_type": ANSWER_TYPES[question_type],
        "shift": say.shift(),
    }


def annotator_answers(answer: str, wrong: list[str], rng: np.random.Generator) -> list[dict]:
    """Ten answers: each wrong with probability 0.1 (at most 3, so the majority stays right)."""
    mistakes = min(int(rng.binomial(10, 0.1)), 3)
    wrong_at = set(rng.choice(10, size=mistakes, replace=False).tolist())
    answers = []
    for i in range(10):
        text, confidence = (wrong[int(rng.integers(len(wrong)))], "maybe") if i in wrong_at else (
            answer, "yes")  # fmt: skip
        answers.append({"answer_id": i + 1, "answer": text, "answer_confidence": confidence})
    return answers


def caption(scene: Scene) -> str:
    """The premise (``sentence1``): every object, then the background (not a task input)."""
    parts = [article(f"{t.size} {t.colour} {t.shape}") for t in scene.things]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return sentence(f"{listed} on a {BACKGROUND_WORDS[scene.background]} background.")


def hypothesis(scene: Scene, label: str, kind: str, say: Say) -> str:
    """A hypothesis of ``kind`` that the image entails, contradicts, or leaves open (neutral)."""
    true = label == "entailment"
    template = say.template(HYPOTHESES, kind)
    if kind == "existence":
        pair = say.prefer(list(scene.things)).pair if true else absent_pair(scene, say)
        return sentence(template.format(a_pair=article(say.pair(pair))))
    if kind == "count":
        attribute, value, matched = pick_count_filter(scene, say)
        wrong = [n for n in range(MAX_COUNT + 1) if n != len(matched)]
        number = len(matched) if true else say.choice(wrong)
        phrase = f"{NUMBER_WORDS[number]} {things_phrase(say, attribute, value, number)}"
        return sentence(template.format(count=phrase))
    if kind == "position":
        thing = say.prefer(list(scene.things))
        side = say.choice(thing.sides(scene.size))
        return sentence(
            template.format(pair=say.pair(thing.pair), side=side if true else OPPOSITE[side])
        )
    pair = say.prefer(list(scene.things)).pair if label == "neutral" else absent_pair(scene, say)
    unknowable = {"material": say.choice(MATERIALS), "quality": say.choice(QUALITIES),
                  "owner": say.choice(OWNERS)}  # fmt: skip
    return sentence(template.format(pair=say.pair(pair), **unknowable))


def snli_items(scene: Scene, say: Say, count: int = 3) -> list[dict[str, Any]]:
    """One hypothesis per label (shuffled) in each round of three, so labels are balanced per
    image; ``count`` hypotheses in all (the last round cut short)."""
    labels = ["entailment", "neutral", "contradiction"]
    items = []
    rounds = [say.rng.permutation(len(labels)).tolist() for _ in range(-(-count // 3))]
    for index in [index for order in rounds for index in order][:count]:
        label = labels[index]
        say.begin()
        kind = say.choice(SNLI_TYPES[label])
        text = hypothesis(scene, label, kind, say)
        items.append(
            {"hypothesis": text, "label": label, "question_type": kind, "shift": say.shift()}
        )
    return items


def schedule(kinds: tuple[str, ...], total: int, rng: np.random.Generator) -> list[str]:
    """``total`` kinds, each as often as the others (up to one), in a seeded random order."""
    repeated = [kinds[i % len(kinds)] for i in range(total)]
    return [repeated[i] for i in rng.permutation(total).tolist()]


def with_fallback(
    build: Callable[[str], dict[str, Any] | None], kind: str, kinds: tuple[str, ...]
) -> dict[str, Any]:
    """The item of ``kind``, or of the next kind this scene allows (count always works)."""
    order = [kind] + [k for k in dict.fromkeys(kinds) if k != kind]
    for candidate in order:
        item = build(candidate)
        if item is not None:
            return item
    raise AssertionError(f"no item kind fits the scene (tried {order})")
