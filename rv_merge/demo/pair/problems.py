"""Multi-step arithmetic word problems with worked solutions, in GSM8K's format.

Each problem comes from a template and a tuple of numbers; its worked solution ends with
GSM8K's `#### <answer>`. The split is decided by a hash of (template, numbers), so train
and test are disjoint sets of parameter tuples: no test problem is ever seen in training.
Everything is deterministic for a given seed. Written for rv-merge.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rv_merge.atomic_files import write_text

NAMES = ["Ana", "Ben", "Chen", "Dina", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea"]
THINGS = ["apples", "books", "coins", "pencils", "stamps", "marbles", "cards", "shells"]


@dataclass(frozen=True)
class Template:
    name: str
    ranges: tuple[tuple[int, int], ...]  # inclusive ranges of a, b, c
    valid: Callable[[int, int, int], bool]
    question: str
    solution: Callable[[int, int, int], tuple[str, int]]


def _buy_give(a, b, c):
    return f"{a} + {b} = {a + b}. Then {a + b} - {c} = {a + b - c}.", a + b - c


def _packs(a, b, c):
    return f"{a} packs of {b} is {a} * {b} = {a * b}. After using {c}, {a * b} - {c} = {a * b - c}.", a * b - c


def _change(a, b, c):
    return f"{b} at {a} each cost {b} * {a} = {a * b}. The change is {c} - {a * b} = {c - a * b}.", c - a * b


def _reading(a, b, c):
    return f"In {b} days {a} * {b} = {a * b} pages. With {c} more, {a * b} + {c} = {a * b + c}.", a * b + c


def _wages(a, b, c):
    return f"The hours are {b} + {c} = {b + c}. The pay is {a} * {b + c} = {a * (b + c)}.", a * (b + c)


def _sharing(a, b, c):
    share = (a - c) // b
    return f"Keeping {c} leaves {a} - {c} = {a - c}. Each friend gets {a - c} / {b} = {share}.", share


TEMPLATES = [
    Template("buy_give", ((5, 60), (2, 40), (1, 30)), lambda a, b, c: c < a + b,
             "{name} has {a} {thing}. {name} buys {b} more and then gives away {c}. "
             "How many {thing} does {name} have now?", _buy_give),
    Template("packs", ((2, 12), (3, 12), (1, 20)), lambda a, b, c: c < a * b,
             "{name} buys {a} packs of {thing} with {b} {thing} in each pack and uses {c} of them. "
             "How many {thing} are left?", _packs),
    Template("change", ((2, 9), (2, 9), (50, 100)), lambda a, b, c: c > a * b and c % 10 == 0,
             "{name} buys {b} {thing} at ${a} each and pays with ${c}. How much change does {name} get?",
             _change),
    Template("reading", ((5, 30), (2, 9), (1, 40)), lambda a, b, c: True,
             "{name} reads {a} pages a day for {b} days and then {c} more pages. "
             "How many pages does {name} read in all?", _reading),
    Template("wages", ((5, 20), (1, 8), (1, 8)), lambda a, b, c: True,
             "{name} earns ${a} an hour, works {b} hours on Monday and {c} hours on Tuesday. "
             "How many dollars does {name} earn?", _wages),
    Template("sharing", ((10, 90), (2, 6), (0, 5)), lambda a, b, c: a > c and (a - c) % b == 0,
             "{name} has {a} {thing}, keeps {c} and shares the rest equally among {b} friends. "
             "How many {thing} does each friend get?", _sharing),
]


def split_of(template: str, numbers: tuple[int, int, int]) -> str:
    """'test' for one parameter tuple in five (by hash), 'train' for the rest."""
    digest = hashlib.sha256(f"{template}:{numbers}".encode()).digest()
    return "test" if digest[0] % 5 == 0 else "train"


def generate(split: str, count: int, seed: int) -> list[dict]:
    """`count` distinct problems of one split: {question, answer ("... #### N"), template}."""
    rng = random.Random(f"{seed}:{split}")
    problems, seen = [], set()
    while len(problems) < count:
        template = TEMPLATES[rng.randrange(len(TEMPLATES))]
        numbers = tuple(rng.randint(low, high) for low, high in template.ranges)
        if not template.valid(*numbers) or split_of(template.name, numbers) != split:
            continue
        if (template.name, numbers) in seen:
            continue
        seen.add((template.name, numbers))
        a, b, c = numbers
        question = template.question.format(name=rng.choice(NAMES), thing=rng.choice(THINGS), a=a, b=b, c=c)
        work, answer = template.solution(a, b, c)
        problems.append({"question": question, "answer": f"{work}\n#### {answer}",
                         "template": template.name, "numbers": list(numbers)})
    return problems


def write_splits(folder: Path, train: int = 2000, test: int = 300, seed: int = 0) -> dict[str, Path]:
    """Write train.jsonl and test.jsonl (GSM8K layout, usable as DATA/gsm8k of a data folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, count in (("train", train), ("test", test)):
        paths[split] = folder / f"{split}.jsonl"
        write_text(paths[split], "".join(json.dumps(p) + "\n" for p in generate(split, count, seed)))
    return paths
