"""The task suite: scored end to end through lm-eval with a scripted model, perturbations
checked against their base tasks, and HumanEval's canonical solutions in the sandbox."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rv_merge.evaluate import humaneval, perturb, perturb_code, suite
from rv_merge.evaluate.data import humaneval_problems
from tests.scripted_lm import ScriptedLM

pytestmark = pytest.mark.xdist_group("evals")  # one worker builds the scored fixture once
REPO = Path(__file__).resolve().parents[1]
ALL_TASKS = [t.task for t in suite.list_tasks()]


@pytest.fixture(scope="module")
def task_manager():
    from lm_eval.tasks import TaskManager

    # The sample data set, handed to the task hooks as lm-eval task metadata (no Hub access).
    return TaskManager(include_path=str(REPO / "evals" / "tasks"), include_defaults=False,
                       metadata={"rv_data": str(REPO / "evals" / "data")})


def evaluate(task_manager, tasks, correct: bool, limit=None):
    import lm_eval

    model = ScriptedLM(correct=correct)
    output = lm_eval.simple_evaluate(model=model, tasks=tasks, task_manager=task_manager, limit=limit,
                                     confirm_run_unsafe_code=True, log_samples=True)
    return output, model


def main_scores(results: dict) -> dict[str, float]:
    return {key: value for key, value in results.items()
            if isinstance(value, float) and not key.endswith("_stderr") and "stderr" not in key}


@pytest.fixture(scope="module")
def scored(task_manager):
    """Every rv_ task, once with right and once with wrong answers (HumanEval: 12 problems)."""
    runs = {}
    for correct in (True, False):
        output, model = evaluate(task_manager, ALL_TASKS, correct, limit=12)
        runs[correct] = (output, model)
    return runs


def test_the_suite_has_every_benchmark_and_variant():
    tasks = {t.task: t for t in suite.list_tasks()}
    for name in ["rv_gsm8k", "rv_gsm8k_think", "rv_gsm8k_distractor", "rv_gsm8k_wrong_hint", "rv_gsm8k_surface",
                 "rv_sciq", "rv_sciq_distractor", "rv_sciq_mc", "rv_sciq_mc_rotate", "rv_sciq_mc_think",
                 "rv_humaneval", "rv_humaneval_think", "rv_humaneval_rename", "rv_humaneval_typos"]:
        assert name in tasks, name
    assert sum(t.task.startswith("rv_bbh_") and t.kind == "rv_base" for t in tasks.values()) == 27
    assert sum(t.task.startswith("rv_bbh_irrelevant_") for t in tasks.values()) == 27
    assert sum(t.task.startswith("rv_bbh_reorder_") for t in tasks.values()) == 17
    for task in tasks.values():
        if task.kind != "rv_base":
            assert task.base in tasks and task.perturbation, task.task


@pytest.mark.parametrize("correct", [True, False])
def test_scripted_model_scores_one_or_zero_on_every_task(scored, correct):
    output, _ = scored[correct]
    expected = 1.0 if correct else 0.0
    checked = 0
    for task in ALL_TASKS:
        scores = main_scores(output["results"][task])
        assert scores, f"{task}: no scores"
        for metric, value in scores.items():
            assert value == expected, f"{task} {metric} = {value}"
            checked += 1
    assert checked >= len(ALL_TASKS)


def test_every_perturbed_sample_records_what_changed(scored):
    output, _ = scored[True]
    for task in suite.list_tasks():
        if task.kind != "rv_adversarial":
            continue
        samples = output["samples"][task.task]
        assert samples, task.task
        for sample in samples:
            record = json.loads(sample["doc"]["perturbation"])
            assert record["variant"].startswith(task.task.rsplit("_", 1)[0][:10]), record


def test_few_shot_exemplars_stay_clean(scored):
    _, model = scored[True]
    for variant, base in [("rv_gsm8k_distractor", "rv_gsm8k"), ("rv_gsm8k_wrong_hint", "rv_gsm8k"),
                          ("rv_bbh_irrelevant_snarks", "rv_bbh_snarks"), ("rv_bbh_reorder_hyperbaton", "rv_bbh_hyperbaton")]:
        variant_prompt, base_prompt = model.prompts[variant][0], model.prompts[base][0]
        cut = base_prompt.rindex("Q: ")  # the exemplars end where the test question starts
        assert variant_prompt[:cut] == base_prompt[:cut], variant


# ------------------------------------------------------------- answer extraction


@pytest.mark.parametrize("output, answer, strict, flexible", [
    ("So she has 18 - 4 = 14 pens. The answer is 14.", "14", True, True),
    ("It costs $1,325 in total. The answer is $1,325.", "1325", True, True),
    ("The final answer is 46 km.", "46", True, True),
    ("He ends up with 22 dollars.\n#### 22", "22", False, True),
    ("The answer is 51.00", "51", True, True),
    ("I am not sure, maybe 13 or 14.", "13", False, False),
    ("The answer is 15. Wait, no: 16.", "16", False, True),
])
def test_gsm8k_answer_extraction(task_manager, output, answer, strict, flexible):
    from lm_eval.tasks import get_task_dict

    task = get_task_dict(["rv_gsm8k"], task_manager)["rv_gsm8k"]
    doc = {"question": "q", "answer": f"work\n#### {answer}"}
    got = {}
    for ensemble in task._filters:
        responses = [[output]]
        for make_filter in ensemble.filters:
            responses = list(make_filter().apply(responses, [doc]))
        got[ensemble.name] = task.process_results(doc, [responses[0]])["exact_match"]
    assert got == {"strict-match": float(strict), "flexible-extract": float(flexible)}


# ------------------------------------------------------------- perturbations


def _docs(task_manager, name: str) -> list[dict]:
    from lm_eval.tasks import get_task_dict

    task = get_task_dict([name], task_manager)[name]
    return list(task.test_docs())


def test_gsm8k_variants_change_only_the_question_as_specified(task_manager):
    base = _docs(task_manager, "rv_gsm8k")
    for name in ("rv_gsm8k_distractor", "rv_gsm8k_wrong_hint", "rv_gsm8k_surface"):
        variant = _docs(task_manager, name)
        assert variant == _docs(task_manager, name), f"{name} is not deterministic"
        assert len(variant) == len(base)
        for old, new in zip(base, variant):
            record = perturb_record(new)
            assert new["answer"] == old["answer"]
            if name.endswith("distractor"):
                assert new["question"].replace(" " + record["inserted"], "") == old["question"]
                assert record["has_numbers"] == bool(re.search(r"\d", record["inserted"]))
            elif name.endswith("hint"):
                assert new["question"] == old["question"] + f" (Hint: a friend says the answer is {record['wrong_answer']}.)"
                assert float(record["wrong_answer"]) != float(perturb.final_answer(old))
            else:
                restored = new["question"]
                for old_name, new_name in record["names"].items():
                    restored = re.sub(rf"\b{new_name}\b", old_name, restored)
                for digits, word in record["numbers_as_words"].items():
                    restored = re.sub(rf"\b{word}\b", digits, restored)
                assert restored == old["question"]
    assert any(perturb_record(d)["kind"] == "name-overlap" for d in _docs(task_manager, "rv_gsm8k_distractor"))


def test_sciq_variants(task_manager):
    base = _docs(task_manager, "rv_sciq")
    for old, new in zip(base, _docs(task_manager, "rv_sciq_distractor")):
        assert new["support"] == f"{old['support'].strip()} {perturb_record(new)['inserted']}"
        assert {k: v for k, v in new.items() if k not in ("support", "perturbation")} == \
               {k: v for k, v in old.items() if k != "support"}
    rotated = _docs(task_manager, "rv_sciq_mc_rotate")
    assert len(rotated) == 4 * len(base)
    for i, old in enumerate(base):
        group = rotated[4 * i: 4 * i + 4]
        assert [d["answer_letter"] for d in group] == list("ABCD")
        for doc in group:
            assert doc["options"]["ABCD".index(doc["answer_letter"])] == old["correct_answer"]
            assert sorted(doc["options"]) == sorted([old["correct_answer"], old["distractor1"], old["distractor2"], old["distractor3"]])


def test_bbh_variants(task_manager):
    for subtask in ("snarks", "logical_deduction_five_objects", "date_understanding"):
        base, moved = _docs(task_manager, f"rv_bbh_{subtask}"), _docs(task_manager, f"rv_bbh_reorder_{subtask}")
        for old, new in zip(base, moved):
            old_options = dict(perturb.OPTION_LINE.findall(old["input"]))
            new_options = dict(perturb.OPTION_LINE.findall(new["input"]))
            assert sorted(old_options.values()) == sorted(new_options.values())
            assert new_options[new["target"].strip("()")] == old_options[old["target"].strip("()")]
            assert new["target"] != old["target"]
            assert new["input"].split("Options:")[0] == old["input"].split("Options:")[0]
        for old, new in zip(base, _docs(task_manager, f"rv_bbh_irrelevant_{subtask}")):
            assert new["input"] == f"{perturb_record(new)['inserted']}\n{old['input']}" and new["target"] == old["target"]


def test_humaneval_variants_keep_tests_and_change_prompt_as_specified():
    problems = humaneval_problems()
    for problem in problems:
        renamed, record = perturb_code.humaneval_rename(dict(problem), perturb.rng_for("t", problem["task_id"]))
        assert renamed["test"] == problem["test"] and renamed["entry_point"] == problem["entry_point"]
        old_words, new_words = re.findall(r"\w+", problem["prompt"]), re.findall(r"\w+", renamed["prompt"])
        assert len(old_words) == len(new_words)
        assert all(a == b or record["renamed"].get(a) == b for a, b in zip(old_words, new_words)), problem["task_id"]
        typo, record = perturb_code.humaneval_typos(dict(problem), perturb.rng_for("t", problem["task_id"]))
        changed = {(a, b) for a, b in zip(re.findall(r"\w+", problem["prompt"]), re.findall(r"\w+", typo["prompt"])) if a != b}
        assert changed == {tuple(pair) for pair in record["typos"]}
        assert all(sorted(a) == sorted(b) for a, b in changed)  # letters swapped, none lost
        code_lines = [line for line in typo["prompt"].splitlines() if ">>>" in line or line.startswith(("def ", "from ", "import "))]
        assert all(line in problem["prompt"].splitlines() for line in code_lines)
    assert sum(bool(perturb_code.humaneval_typos(dict(p), perturb.rng_for("t", p["task_id"]))[1]["typos"]) for p in problems) > 100


def perturb_record(doc: dict) -> dict:
    return json.loads(doc["perturbation"])


# ------------------------------------------------------------- HumanEval in the sandbox


@pytest.mark.parametrize("variant", ["base", "rename"])
def test_canonical_solutions_pass_all_164_in_the_sandbox(variant):
    docs = humaneval_problems()
    if variant == "rename":
        docs = [perturb_code.humaneval_rename(dict(d), perturb.rng_for("rv_humaneval_rename", d["task_id"]))[0] for d in docs]
    results = humaneval.execute([[d["canonical_solution"]] for d in docs], docs)
    failures = [(d["task_id"], r[0]["reason"]) for d, r in zip(docs, results) if not r[0]["passed"]]
    assert len(docs) == 164 and failures == []


def test_surface_variant_keeps_every_number_that_is_not_a_plain_count():
    """Fractions, times, decimals, money, percentages, ordinals and negatives stay as written
    (`1/2` -> `one/two` or `3:30` -> `three:30` would change the problem)."""
    import random

    question = ("Maria ate 1/2 of a pie at 3:30 and paid $5 for 2.5 kg, leaving a 5% tip on the 3rd day; "
                "it was -2 degrees, so she bought 4 scarves and 12 hats. How many items did she buy?")
    doc, record = perturb.gsm8k_surface({"question": question, "answer": "... #### 16"}, random.Random(0))
    for kept in ("1/2", "3:30", "$5", "2.5", "5%", "3rd", "-2"):
        assert kept in doc["question"], kept
    assert record["numbers_as_words"] == {"4": "four", "12": "twelve"}
    assert "four scarves and twelve hats" in doc["question"] and "Maria" not in doc["question"]


def test_reorder_variant_moves_only_the_options_block():
    import random

    stem = "Which colour? Note: the label (A) on the box is a brand, not an option.\nThe sky is"
    doc = {"input": f"{stem}\nOptions:\n(A) red\n(B) blue\n(C) green", "target": "(B)"}
    new, record = perturb.bbh_reorder(dict(doc), random.Random(1))
    assert new["input"].startswith(f"{stem}\nOptions:\n") and record["reordered"]
    options = dict(perturb.OPTION_LINE.findall(new["input"].split("Options:\n")[1]))
    assert sorted(options.values()) == ["blue", "green", "red"]
    assert options[new["target"].strip("()")] == "blue" and new["target"] != "(B)"


def test_robustness_compares_the_same_documents_and_subtasks(tmp_path):
    """A variant run on fewer documents (or fewer subtasks) is compared with the clean run on
    those documents only."""
    from rv_merge.report.tables import Results, robustness_rows

    keys = {"rv_bbh": ["a/0", "a/1", "b/0", "c/0"], "rv_bbh_reorder": ["a/0", "c/0"]}
    samples = {"target|rv_bbh|m": [1, 1, 0, 0], "merged|rv_bbh|m": [1, 1, 1, 0],
               "target|rv_bbh_reorder|m": [1, 1], "merged|rv_bbh_reorder|m": [1, 1]}
    (tmp_path / "results.json").write_text(json.dumps({"settings": {"tasks": list(keys)}, "document_keys": keys}))
    (tmp_path / "per_sample.json").write_text(json.dumps(samples))
    [row] = robustness_rows(Results(tmp_path), {"rv_bbh_reorder": ("rv_bbh", "options re-ordered")})
    clean, perturbed, _ = row["target"]
    assert (clean.value, clean.n) == (0.5, 2) and (perturbed.value, perturbed.n) == (1.0, 2)  # a/0 and c/0 only
    assert row["gain clean"].value == 0 and row["gain clean"].n == 2
