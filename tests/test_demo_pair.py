"""The demo pair's training data: correct, deterministic, train and test disjoint."""

from __future__ import annotations

import re

from rv_merge.demo.pair.problems import TEMPLATES, generate, split_of
from rv_merge.demo.pair.train import completion
from rv_merge.rewards import answer_reward, final_number


def _evaluate(problem: dict) -> int:
    """Recompute the answer from the worked solution's own equations."""
    work = problem["answer"].split("####")[0]
    for left, right in re.findall(r"([\d\s+\-*/]+?)\s*=\s*(-?\d+)", work):
        assert eval(left.strip().replace("/", "//")) == int(right), (left, right)  # noqa: S307 - our digits
    return int(problem["answer"].split("####")[1])


def test_answers_follow_from_the_worked_solutions():
    for problem in generate("train", 300, seed=0) + generate("test", 100, seed=0):
        answer = _evaluate(problem)
        template = next(t for t in TEMPLATES if t.name == problem["template"])
        assert template.solution(*problem["numbers"])[1] == answer
        assert answer >= 0 and str(answer) in problem["answer"].splitlines()[-1]


def test_splits_are_disjoint_and_deterministic():
    train, test = generate("train", 2000, seed=0), generate("test", 300, seed=0)
    key = lambda p: (p["template"], tuple(p["numbers"]))  # noqa: E731
    assert not {key(p) for p in train} & {key(p) for p in test}
    assert all(split_of(*key(p)) == "test" for p in test)
    assert generate("test", 300, seed=0) == test
    assert generate("test", 300, seed=1) != test
    assert {p["template"] for p in test} == {t.name for t in TEMPLATES}


def test_reward_reads_the_last_number_of_the_answer_only():
    assert final_number(" 3 + 4 = 7. The answer is 7.") == "7"
    assert final_number(" It is 1,250 dollars.") == "1250"
    assert final_number(" The answer is 12.\nQ: then 99?") == "12"
    assert final_number(" no idea") is None
    assert answer_reward([" so 5", " so 6", " none"], answer=["5", "5", "5"]) == [1.0, 0.0, 0.0]
    problem = generate("train", 1, seed=0)[0]
    assert answer_reward([completion(problem["answer"])], answer=[problem["answer"].split("####")[1].strip()]) == [1.0]


def test_sft_demonstrations_mix_worked_and_direct_answers_deterministically():
    from rv_merge.demo.pair.train import Budget, is_direct

    problems = generate("train", 800, seed=0)
    budget = Budget()
    direct = [is_direct(p["question"], budget) for p in problems]
    assert direct == [is_direct(p["question"], budget) for p in problems]
    assert abs(sum(direct) / len(direct) - budget.direct_fraction) < 0.05
    assert not any(is_direct(p["question"], Budget(direct_fraction=0.0)) for p in problems)
    answer = problems[0]["answer"]
    number = answer.split("####")[1].strip()
    assert completion(answer, direct=True) == f" The answer is {number}."
    worked = completion(answer)
    assert worked.endswith(f"The answer is {number}.") and "=" in worked
    assert final_number(completion(answer, direct=True)) == final_number(worked) == number
