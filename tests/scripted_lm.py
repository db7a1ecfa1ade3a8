"""A scripted lm-eval model that answers from the reference answers (or gets them wrong).

It reads each request's document, so it can return what a correct (or an incorrect) model
would say, in realistic wording: chatty, with units, with thousands separators.
"""

from __future__ import annotations

import json

from lm_eval.api.model import LM

from rv_merge.evaluate.perturb import final_answer

GSM8K_STYLES = [
    "First we work it out step by step, which gives {n}. The answer is {n}.",
    "So in total that is ${n}.\nThe answer is ${n}.",
    "Let me think... the result is {c} units. The final answer is {c}.",
    "We get {n} dollars. The answer is {n}.00",
]


def _with_commas(number: str) -> str:
    return f"{int(number):,}" if number.lstrip("-").isdigit() else number


class ScriptedLM(LM):
    def __init__(self, correct: bool = True):
        super().__init__()
        self.correct = correct
        self.prompts: dict[str, list[str]] = {}

    def loglikelihood(self, requests):
        results = []
        for request in requests:
            _, continuation = request.args
            right = continuation.strip() == request.doc["correct_answer"]
            results.append((0.0, True) if right == self.correct else (-10.0, False))
        return results

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError

    def generate_until(self, requests):
        outputs = []
        for request in requests:
            self.prompts.setdefault(request.task_name, []).append(request.args[0])
            outputs.append(self.answer(request.task_name, request.doc, request.doc_id or 0))
        return outputs

    def answer(self, task: str, doc: dict, index: int) -> str:
        if task.startswith("rv_gsm8k"):
            number = final_answer(doc)
            if not self.correct:
                number = str(int(float(number)) + 1)
            style = GSM8K_STYLES[index % len(GSM8K_STYLES)]
            return style.format(n=number, c=_with_commas(number))
        if task.startswith("rv_sciq_mc"):
            letter = doc["answer_letter"] if self.correct else "ABCD"[("ABCD".index(doc["answer_letter"]) + 1) % 4]
            return ["{l}", "Answer: {l}", "{l}. That is the one."][index % 3].format(l=letter)
        if task.startswith("rv_bbh"):
            target = doc["target"] if self.correct else f"not {doc['target']}"
            return [f"Let us reason about it. So the answer is {target}.",
                    f"Step one, step two. So the answer is {target}"][index % 2]
        if task.startswith("rv_humaneval"):
            return doc["canonical_solution"] if self.correct else "    raise NotImplementedError\n"
        raise AssertionError(f"no script for {task}")


def perturbation(doc: dict) -> dict:
    return json.loads(doc["perturbation"])
