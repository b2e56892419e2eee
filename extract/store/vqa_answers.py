"""The official VQA answer processing and per-question accuracy.

A faithful port of the current official evaluation script (GT-Vision-Lab/VQA,
``PythonEvaluationTools/vqaEvaluation/vqaEval.py``), quirks included, so that scores computed here
match the evaluation server:

* punctuation marks are deleted when the *original* text has the mark next to a space or holds a
  digit-comma-digit pattern anywhere, otherwise replaced by a space;
* periods not followed by a digit are deleted, but at most 32 per string (the official code passes
  ``re.UNICODE`` (= 32) where ``re.sub`` expects a count);
* ``\\d`` matches ASCII digits only (the script is Python 2 and never sets the unicode flag);
* number words map to digits, the articles a/an/the are dropped, contractions are restored from
  the official table (its capitalised keys never match, since the text is lowercased first).

Standard library only: the trainer imports it for the official metric.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# The official `contractions` dict, verbatim (120 entries; "somebody'd" -> "somebodyd" included).
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}  # fmt: skip

NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip

ARTICLES = frozenset({"a", "an", "the"})

# Not the apostrophe, not the colon (the current script dropped both from the list).
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<",
               "@", "`", ",", "?", "!")  # fmt: skip

# re.ASCII: the official script is Python 2, where \d without the unicode flag is [0-9].
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)", re.ASCII)
# Verbatim: "(?!<=\d)" is a (harmless) typo for a lookbehind; it never rejects a period.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)", re.ASCII)
_MAX_PERIODS_DELETED = 32  # the official code passes re.UNICODE (= 32) as re.sub's count


def clean_whitespace(text: str) -> str:
    """Newlines and tabs become spaces, then strip (applied to every answer and prediction)."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def process_punctuation(text: str) -> str:
    """The official punctuation processing (the decision per mark looks at the input text)."""
    out = text
    has_digit_comma = _COMMA_STRIP.search(text) is not None
    for mark in PUNCTUATION:
        if mark + " " in text or " " + mark in text or has_digit_comma:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD_STRIP.sub("", out, count=_MAX_PERIODS_DELETED)


def process_digit_article(text: str) -> str:
    """Lowercase, number words to digits, drop articles, restore contractions."""
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in ARTICLES]
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def normalize_answer(text: str) -> str:
    """Whitespace cleaning, then punctuation, then digit/article processing."""
    return process_digit_article(process_punctuation(clean_whitespace(text)))


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """Official accuracy of one prediction against the (10) annotator answers.

    Answers and prediction are normalised only when the answers are not all identical (after
    whitespace cleaning); each answer i scores ``min(1, matches among the other answers / 3)`` and
    the question scores their mean: 0, 0.3, 0.6, 0.9, 1.0 for 0, 1, 2, 3, >=4 matching answers.
    """
    if not answers:
        raise ValueError("vqa_accuracy needs the annotator answers of the question, got none")
    pred = clean_whitespace(prediction)
    truth = [clean_whitespace(answer) for answer in answers]
    if len(set(truth)) > 1:
        truth = [process_digit_article(process_punctuation(answer)) for answer in truth]
        pred = process_digit_article(process_punctuation(pred))
    scores = []
    for left_out in range(len(truth)):
        matches = sum(1 for j, answer in enumerate(truth) if j != left_out and answer == pred)
        scores.append(min(1.0, matches / 3))
    return sum(scores) / len(scores)


def soft_score(count: int) -> float:
    """Soft training target for an answer given by ``count`` annotators (0.3/0.6/0.9/1.0)."""
    if count < 0:
        raise ValueError(f"annotator count must be >= 0, got {count}")
    return (0.0, 0.3, 0.6, 0.9)[count] if count < 4 else 1.0
