"""The word-problem task's prompt format and GRPO reward, shared by the demo pair's training
(rv_merge.demo.pair.train) and `rv steer train`.

Prompts are the rv_gsm8k task's ("Q: ...\nA:"); answers end with "The answer is N." so both
answer extractors of the task can read them. The reward is 1 when the completion's final
number is the problem's answer.
"""

from __future__ import annotations

import re

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
STATED = re.compile(r"[Tt]he answer is \$?(-?\d[\d,]*(?:\.\d+)?)")


def prompt(question: str) -> str:
    return f"Q: {question}\nA:"


def final_number(text: str) -> str | None:
    """The first stated answer ("The answer is N"), else the last number before any new "Q:"."""
    text = text.split("Q:")[0]
    stated = STATED.search(text)
    numbers = [stated.group(1)] if stated else NUMBER.findall(text)
    return numbers[-1].replace(",", "").rstrip(".") if numbers else None


def answer_reward(completions: list[str], answer: list[str], **_) -> list[float]:
    """1.0 when the completion's answer (see final_number) is the right one."""
    return [1.0 if final_number(c) == a else 0.0 for c, a in zip(completions, answer)]
