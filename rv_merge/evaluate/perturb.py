"""Adversarial perturbations of task documents: deterministic, recorded, answer-preserving.

Each perturbation takes one document and a seeded random generator and returns the new
document plus a record of what it changed. `perturb_docs` applies one to a dataset: every
document gets a `perturbation` field (JSON) saying what was done, so the sample logs show
it. Seeds derive from the variant name and the document text, never from Python's `hash`,
so a document is perturbed the same way in every run and process.

Designs follow published robustness suites (facts, not code, carried over): GSM-IC
(irrelevant context, topic and name overlap varied; Shi et al. 2023), GSM-Plus (distractor
insertion, surface changes; Li et al. 2024) and SCORE-style option-order moves. HumanEval's
prompts are code, perturbed in rv_merge.evaluate.perturb_code.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from typing import Callable

Perturbation = Callable[[dict, random.Random], tuple[dict, dict]]


def rng_for(variant: str, text: str) -> random.Random:
    digest = hashlib.sha256(f"{variant}\n{text}".encode()).hexdigest()
    return random.Random(int(digest[:16], 16))


def perturb_docs(dataset, variant: str, perturbation: Perturbation, key: str):
    """Apply `perturbation` to every document of a datasets.Dataset."""

    def one(doc: dict) -> dict:
        new, record = perturbation(dict(doc), rng_for(variant, str(doc[key])))
        new["perturbation"] = json.dumps({"variant": variant, **record}, sort_keys=True)
        return new

    return dataset.map(one, load_from_cache_file=False)


# ------------------------------------------------------------------------- GSM8K

DISTRACTORS = [  # (kind, has numbers, sentence); {name} takes a name from the problem
    ("off-topic", False, "The weather was mild and the sky stayed clear all afternoon."),
    ("off-topic", False, "The town library repainted its front door a bright green."),
    ("off-topic", True, "The school bus that passes by carries 48 students every morning."),
    ("off-topic", True, "A nearby bakery sold 125 loaves of bread last Tuesday."),
    ("name-overlap", False, "{name}'s cousin prefers to read mystery novels on weekends."),
    ("name-overlap", True, "{name}'s neighbour owns 9 bicycles and 3 scooters."),
]
FIRST_NAMES = [
    "James", "John", "Mary", "Sarah", "Tom", "Anna", "Mark", "Lisa", "Jack", "Emma",
    "Maria", "David", "Paul", "Linda", "Kevin", "Julia", "Carla", "Peter", "Nina", "Sam",
    "Betty", "Jane", "Mike", "Rose", "Tim", "Kim", "Alice", "Bob", "Eli", "Zoe",
]
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                "nine", "ten", "eleven", "twelve"]
SMALL_NUMBER = re.compile(r"(?<![\d.,$/:\-])\b(1[0-2]|\d)\b(?![\d.,%/:]|st|nd|rd|th)")


def final_answer(doc: dict) -> str:
    """The number after GSM8K's `####`, with thousands separators removed."""
    return doc["answer"].split("####")[-1].strip().replace(",", "")


def _split_question(question: str) -> tuple[str, str]:
    """(context, last sentence): the last sentence is usually the question asked."""
    match = re.search(r"^(.*[.!?])\s+([^.!?]*[.!?]?)\s*$", question.strip(), flags=re.S)
    return (match.group(1), match.group(2)) if match else ("", question.strip())


def gsm8k_distractor(doc: dict, rng: random.Random) -> tuple[dict, dict]:
    """Insert one irrelevant sentence before the question sentence."""
    names = [n for n in FIRST_NAMES if re.search(rf"\b{n}\b", doc["question"])]
    pool = [d for d in DISTRACTORS if names or d[0] != "name-overlap"]
    kind, numbers, template = pool[rng.randrange(len(pool))]
    sentence = template.format(name=names[0] if names else "")
    context, asked = _split_question(doc["question"])
    doc["question"] = f"{context} {sentence} {asked}".strip()
    return doc, {"kind": kind, "has_numbers": numbers, "inserted": sentence}


def gsm8k_wrong_hint(doc: dict, rng: random.Random) -> tuple[dict, dict]:
    """Append a hint that states a wrong answer."""
    answer = float(final_answer(doc))
    wrong = answer + rng.choice([-3, -2, -1, 1, 2, 3, 10])
    text = str(int(wrong)) if wrong == int(wrong) else f"{wrong:g}"
    doc["question"] = f"{doc['question'].rstrip()} (Hint: a friend says the answer is {text}.)"
    return doc, {"wrong_answer": text}


def gsm8k_surface(doc: dict, rng: random.Random) -> tuple[dict, dict]:
    """Rename people and write small whole numbers as words; the answer does not change."""
    question = doc["question"]
    present = [n for n in FIRST_NAMES if re.search(rf"\b{n}\b", question)]
    free = [n for n in FIRST_NAMES if n not in present and not re.search(rf"\b{n}\b", question)]
    rng.shuffle(free)
    names = dict(zip(present, free))
    for old, new in names.items():
        question = re.sub(rf"\b{old}\b", new, question)
    words = {}

    def spell(match: re.Match) -> str:
        words[match.group(0)] = NUMBER_WORDS[int(match.group(0))]
        return NUMBER_WORDS[int(match.group(0))]

    # a whole number 0-12 standing alone: not part of 3.5, 1,200, $5, 5%, 10th, 1/2, 3:30 or -2
    question = re.sub(SMALL_NUMBER, spell, question)
    doc["question"] = question
    return doc, {"names": names, "numbers_as_words": words}


# ------------------------------------------------------------------------- SciQ

SCIENCE_ASIDES = [
    "Granite is a common igneous rock found in continental crust.",
    "Honeybees communicate the direction of food with a waggle dance.",
    "The first practical telescope was built in the early seventeenth century.",
    "Copper has been used in electrical wiring because it conducts well.",
]
LETTERS = "ABCD"


def sciq_distractor(doc: dict, rng: random.Random) -> tuple[dict, dict]:
    """Add an irrelevant science sentence to the support passage."""
    sentence = SCIENCE_ASIDES[rng.randrange(len(SCIENCE_ASIDES))]
    doc["support"] = f"{doc['support'].strip()} {sentence}".strip()
    return doc, {"inserted": sentence}


def _lettered(doc: dict, order: list[str], position: int) -> dict:
    options = list(order)
    options.insert(position, doc["correct_answer"])
    doc["options"] = options
    doc["answer_letter"] = LETTERS[position]
    return doc


def sciq_lettered(doc: dict, rng: random.Random) -> tuple[dict, dict]:
    """The lettered form: distractors shuffled, correct answer at a seeded position."""
    distractors = [doc["distractor1"], doc["distractor2"], doc["distractor3"]]
    rng.shuffle(distractors)
    position = rng.randrange(4)
    return _lettered(doc, distractors, position), {"correct_position": LETTERS[position]}


def sciq_rotations(dataset, variant: str):
    """Each question four times, the correct answer at A, B, C and D in turn."""
    import datasets

    rows = []
    for source, doc in enumerate(dataset):
        distractors = [doc["distractor1"], doc["distractor2"], doc["distractor3"]]
        rng_for(variant, doc["question"]).shuffle(distractors)
        for position in range(4):
            row = _lettered(dict(doc), distractors, position)
            row["perturbation"] = json.dumps(  # `source`: the clean document this row rotates
                {"variant": variant, "correct_position": LETTERS[position], "source": source}, sort_keys=True)
            rows.append(row)
    return datasets.Dataset.from_list(rows)


# ------------------------------------------------------------------------- BBH

OPTION_LINE = re.compile(r"\(([A-R])\) (.*)")
OPTION_LETTERS = "ABCDEFGHIJKLMNOPQR"
ASIDES = [
    "Note: the museum on Elm Street reopened last spring.",
    "Note: a light rain fell over the harbour this morning.",
    "Note: the chess club meets on the second floor.",
]


def bbh_reorder(doc: dict, rng: random.Random) -> tuple[dict, dict]:
    """Re-order the lettered options so the correct one moves; re-letter, fix the target.

    Only the options block is touched: the last run of lines "(A) ...", "(B) ...", ... in
    letter order. An "(A) " inside the question's stem stays where it is."""
    lines = doc["input"].split("\n")
    block = _options_block(lines)
    correct = doc["target"].strip("() ")
    if block is None or correct not in [letter for letter, _ in block[2]]:
        return doc, {"reordered": False, "reason": "no lettered options"}
    start, end, options = block
    letters = [letter for letter, _ in options]
    order = list(range(len(options)))  # order[new position] = old position
    old_index = letters.index(correct)
    while order.index(old_index) == old_index:
        rng.shuffle(order)
    moved = [f"({letters[i]}) {options[old][1]}" for i, old in enumerate(order)]
    doc["input"] = "\n".join(lines[:start] + moved + lines[end:])
    doc["target"] = f"({letters[order.index(old_index)]})"
    return doc, {"reordered": True, "old_target": f"({correct})", "new_target": doc["target"]}


def _options_block(lines: list[str]) -> tuple[int, int, list[tuple[str, str]]] | None:
    """(first line, line after the last, [(letter, text)]) of the last run of option lines."""
    for start in reversed(range(len(lines))):
        options = []
        for offset, line in enumerate(lines[start:]):
            match = OPTION_LINE.fullmatch(line)
            if offset >= len(OPTION_LETTERS) or not match or match.group(1) != OPTION_LETTERS[offset]:
                break
            options.append((match.group(1), match.group(2)))
        if len(options) >= 2:
            return start, start + len(options), options
    return None


def bbh_irrelevant(doc: dict, rng: random.Random) -> tuple[dict, dict]:
    """Put one irrelevant sentence before the problem."""
    sentence = ASIDES[rng.randrange(len(ASIDES))]
    doc["input"] = f"{sentence}\n{doc['input']}"
    return doc, {"inserted": sentence}

