"""`rv eval` end to end on toy models and the sample data: merge, evaluate, cache, resume,
report."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from rv_merge import statistics
from rv_merge.report.markdown import format_estimate
from rv_merge.cli import main
from rv_merge.evaluate import suite
from rv_merge.demo.toy_models import build_toy_trio
from tests.conftest import BIN, OFFLINE_ENV, load_tensors, recipe_dict, save_tensors, write_recipe

pytestmark = pytest.mark.xdist_group("eval_runner")
REPO = Path(__file__).resolve().parents[1]
EVAL = {"tasks": ["rv_gsm8k", "rv_sciq", "rv_humaneval"], "limit": 3, "num_fewshot": 1, "max_gen_toks": 8}
JOBS = 3 * 3 + 2 * 2  # three models x three tasks, plus GRPO and merged on two think variants


# ------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A private toy trio (a test edits its weights), a recipe with an eval section, a
    private store and a private copy of the task suite."""
    root = tmp_path_factory.mktemp("eval")
    models = build_toy_trio(root / "models")
    shutil.copytree(REPO / "evals" / "tasks", root / "tasks")
    recipe = recipe_dict(models["target"], models["sft"], models["grpo"])
    recipe["eval"] = EVAL
    write_recipe(root / "toy.yml", recipe)
    env = {"RV_STORE": str(root / "store"), "RV_TASKS_DIR": str(root / "tasks"), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1"}
    return root, models, env


def rv_eval(root: Path, env: dict, monkeypatch, recipe: str = "toy.yml") -> dict:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    suite._configs.cache_clear()
    code = main(["eval", str(root / recipe), "--data", str(REPO / "evals" / "data"), "--reports", str(root / "reports")])
    assert code == 0
    return json.loads((root / "reports" / Path(recipe).stem / "results.json").read_text())


def ran(meta: dict) -> set[tuple[str, str]]:
    return {(r["model"], r["task"]) for r in meta["results"] if not r["cached"]}


def test_full_loop_then_cache_hits_and_misses(workspace, monkeypatch):
    root, models, env = workspace
    first = rv_eval(root, env, monkeypatch)
    assert first["jobs_run"] == JOBS and first["jobs_cached"] == 0
    folder = root / "reports" / "toy"
    for name in ("report.md", "results.json", "per_sample.json", "deltas.png", "robustness.png"):
        assert (folder / name).is_file(), name
    assert (folder / "deltas.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert first["models"]["merged"]["merged_in_this_run"]

    again = rv_eval(root, env, monkeypatch)
    assert again["jobs_run"] == 0 and again["jobs_cached"] == JOBS
    assert not again["models"]["merged"]["merged_in_this_run"]
    assert again["wall_s"] < 0.05 * first["wall_s"] + 2.0  # imports aside, nothing is recomputed

    # a changed recipe: a new merged model; only its evaluations re-run
    recipe = yaml.safe_load((root / "toy.yml").read_text())
    recipe["parameters"]["alpha"] = 0.5
    write_recipe(root / "toy.yml", recipe)
    changed = rv_eval(root, env, monkeypatch)
    assert ran(changed) == {(m, t) for m, t in ran(first) if m == "merged"}

    # a changed task config: only that task re-runs, for every model
    sciq = root / "tasks" / "sciq" / "rv_sciq.yaml"
    sciq.write_text(sciq.read_text().replace('Answer:"', 'Answer: "'))
    changed = rv_eval(root, env, monkeypatch)
    assert ran(changed) == {("target", "rv_sciq"), ("grpo", "rv_sciq"), ("merged", "rv_sciq")}

    # a changed input weight (GRPO): a new merge, and GRPO's and the merged model's runs
    grpo = Path(models["grpo"])
    tensors = load_tensors(grpo)
    tensors["model.norm.weight"] = tensors["model.norm.weight"] + 0.5
    save_tensors(grpo, tensors)
    changed = rv_eval(root, env, monkeypatch)
    assert {m for m, _ in ran(changed)} == {"grpo", "merged"}
    assert len(ran(changed)) == JOBS - 3


def test_report_agrees_with_results(workspace, monkeypatch):
    root, _, env = workspace
    meta = rv_eval(root, env, monkeypatch)
    samples = json.loads((root / "reports" / "toy" / "per_sample.json").read_text())
    text = (root / "reports" / "toy" / "report.md").read_text()
    for entry in meta["results"]:
        for metric, values in entry["metrics"].items():
            scores = samples[f"{entry['model']}|{entry['task']}|{metric}"]
            assert math.isclose(sum(scores) / len(scores), values["value"]), (entry, metric)
    target = samples["target|rv_sciq|acc,none"]
    merged = samples["merged|rv_sciq|acc,none"]
    expected = format_estimate(statistics.paired_delta(target, merged), True)
    row = next(line for line in text.splitlines() if line.startswith("| rv_sciq | acc,none"))
    assert expected in row
    assert "seed 1234" in text and "limit 3 documents per task" in text and "lm_eval 0.4.13" in text
    (dtype, loss), = meta["rounding_loss"].items()  # the recipe's own output dtype only
    assert 0 < loss["entries"] <= 1 and f"written in {dtype}, target + v equals the rounded target in " \
        f"{loss['entries']:.1%}" in text
    assert main(["report", "--reports", str(root / "reports")]) == 0
    assert (root / "reports" / "README.md").read_text().count("| [toy](toy/report.md)") == 3
    assert "<table>" in (root / "reports" / "index.html").read_text()


def test_lm_eval_response_cache_is_never_used(workspace, monkeypatch):
    import lm_eval

    from rv_merge.evaluate import lm_eval_job
    from rv_merge.evaluate.jobs import Job, ModelUnderTest

    seen = {}

    def fake(**kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(lm_eval, "simple_evaluate", fake)
    job = Job(ModelUnderTest("target", Path("x"), "fp"), "rv_sciq")
    with pytest.raises(RuntimeError):
        lm_eval_job._simple_evaluate(object(), None, job, suite_settings(), None)
    assert seen["use_cache"] is None and seen["cache_requests"] is False


def suite_settings():
    from rv_merge.recipe.schema import EvalSettings

    return EvalSettings(**EVAL)


def test_resume_after_kill(workspace, tmp_path):
    root, models, env = workspace
    recipe = yaml.safe_load((root / "toy.yml").read_text())
    recipe["parameters"]["alpha"] = 0.25  # not evaluated before: all merged jobs are new
    write_recipe(root / "resume.yml", recipe)
    command = [str(BIN / "rv"), "eval", str(root / "resume.yml"), "--data", str(REPO / "evals" / "data"),
               "--reports", str(root / "reports")]
    process = subprocess.Popen(command, env={**OFFLINE_ENV, **env}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    done_before_kill = 0
    deadline = time.monotonic() + 300
    for line in process.stdout:
        if "merged /" in line and ": done in" in line:
            done_before_kill += 1
            if done_before_kill == 2:
                os.killpg(process.pid, signal.SIGKILL)
                break
        assert time.monotonic() < deadline
    process.wait()
    assert done_before_kill == 2
    result = subprocess.run(command, env={**OFFLINE_ENV, **env}, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    meta = json.loads((root / "reports" / "resume" / "results.json").read_text())
    merged_new = [r for r in meta["results"] if r["model"] == "merged"]
    assert sum(r["cached"] for r in merged_new) == 2  # the two finished before the kill
    assert sum(not r["cached"] for r in merged_new) == len(merged_new) - 2


def test_offline_without_data_is_refused_before_any_work(workspace, monkeypatch, capsys):
    root, _, env = workspace
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("RV_EVAL_DATA", raising=False)
    code = main(["eval", str(root / "toy.yml"), "--reports", str(root / "elsewhere")])
    assert code == 2
    assert "need local data: pass --data DIR" in capsys.readouterr().err
    assert not (root / "elsewhere").exists()


@pytest.mark.parametrize("change, message", [
    ({"data": "no/such/folder"}, "eval.data: no such folder `no/such/folder`"),
    ({"alphas": [0.1, 0.2]}, "eval.alphas [0.1, 0.2] must include the recipe's parameters.alpha"),
    ({"alphas": [1, 1]}, "lists a value twice"),
    ({"limits": {"rv_sciq_typo": 2}}, "unknown task `rv_sciq_typo`"),
    ({"tasks": ["rv_gsm8k_distracter"]}, "unknown task `rv_gsm8k_distracter`; did you mean `rv_gsm8k_distractor`?"),
    ({"tasks": []}, "key `eval.tasks`: lists no task"),
    ({"baselines": []}, "key `eval.baselines`: must include target"),
    ({"num_fewshot": -2}, "key `eval.num_fewshot`: must be 0 or more, got -2"),
    ({"limit": 0}, "key `eval.limit`: must be a positive integer, got 0"),
    ({"limits": {"rv_sciq": -1}}, "rv_sciq: must be a positive integer, got -1"),
    ({"alphas": [0.5, 0.5000000001, 1.0]}, "alphas [0.5, 0.5000000001] print alike (0.5)"),
    ({"think": "yes"}, "key `eval.think`: Input should be a valid boolean, got 'yes'"),
])
def test_bad_eval_settings_are_refused_before_any_work(workspace, monkeypatch, capsys, change, message):
    root, _, env = workspace
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("RV_EVAL_DATA", raising=False)
    recipe = yaml.safe_load((root / "toy.yml").read_text())
    recipe["eval"] = {**recipe["eval"], **change}
    write_recipe(root / "bad.yml", recipe)
    assert main(["eval", str(root / "bad.yml"), "--reports", str(root / "bad-reports")]) == 2
    assert message in capsys.readouterr().err
    assert not (root / "bad-reports").exists()


def test_command_line_overrides_are_validated_like_the_file(workspace, monkeypatch, capsys):
    root, _, env = workspace
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for limit in ("0", "-3"):
        code = main(["eval", str(root / "toy.yml"), "--limit", limit, "--data", str(REPO / "evals" / "data"),
                     "--reports", str(root / "override-reports")])
        assert code == 2
        assert "command-line ['limit']: key `limit`: must be a positive integer" in capsys.readouterr().err
    assert not (root / "override-reports").exists()


# ------------------------------------------------------------------ alpha sweeps

SWEEP = [0, 0.5, 1.0, 1.5]


def test_alpha_sweep_in_memory_equals_separate_merged_models(workspace, monkeypatch):
    """Each alpha of an in-memory sweep scores exactly as its merged model does when merged by
    mergekit and evaluated on its own, and its weights are that model's, bit for bit."""
    from transformers import AutoModelForCausalLM

    from rv_merge.merge.in_memory import InMemoryMerge
    from rv_merge.recipe.loading import load_recipe

    root, models, env = workspace
    settings = {"tasks": ["rv_gsm8k", "rv_sciq"], "limit": 3, "limits": {"rv_sciq": 5}, "num_fewshot": 1,
                "max_gen_toks": 8, "think": False, "baselines": ["target", "sft", "grpo"]}
    recipe = recipe_dict(models["target"], models["sft"], models["grpo"], alpha=1.0, sign=-1)
    write_recipe(root / "sweep.yml", {**recipe, "eval": {**settings, "alphas": SWEEP}})
    meta = rv_eval(root, {**env, "RV_STORE": str(root / "sweep-store")}, monkeypatch, "sweep.yml")
    assert not (root / "sweep-store" / "models").exists()  # no model written
    assert meta["sweep"] == {"alpha=0": 0, "alpha=0.5": 0.5, "merged": 1.0, "alpha=1.5": 1.5}
    swept = json.loads((root / "reports" / "sweep" / "per_sample.json").read_text())
    report_text = (root / "reports" / "sweep" / "report.md").read_text()
    assert "## Alpha sweep" in report_text and (root / "reports" / "sweep" / "sweep.png").is_file()
    assert len(swept["sft|rv_sciq|acc,none"]) == 5 and len(swept["sft|rv_gsm8k|exact_match,flexible-extract"]) == 3
    delta = statistics.paired_delta(swept["sft|rv_sciq|acc,none"], swept["grpo|rv_sciq|acc,none"])
    assert f"| rv_sciq | acc,none | {format_estimate(statistics.mean_estimate(swept['sft|rv_sciq|acc,none']))}" in report_text
    assert format_estimate(delta, True) in report_text.split("## The pair")[1].split("##")[0]

    target = AutoModelForCausalLM.from_pretrained(models["target"], dtype=torch.float32)
    merge = InMemoryMerge(load_recipe(root / "sweep.yml"), "sweep.yml")
    for label, alpha in meta["sweep"].items():
        name = f"alpha-{alpha:g}"
        write_recipe(root / f"{name}.yml", {**recipe, "parameters": {"alpha": alpha, "sign": -1}, "eval": settings})
        single = rv_eval(root, {**env, "RV_STORE": str(root / "separate-store")}, monkeypatch, f"{name}.yml")
        alone = json.loads((root / "reports" / name / "per_sample.json").read_text())
        for key, scores in alone.items():
            model, task, metric = key.split("|")
            if model == "merged":
                assert swept[f"{label}|{task}|{metric}"] == scores, (alpha, key)
        merge.apply(target, -alpha)
        written = load_tensors(Path(single["models"]["merged"]["path"]))
        state = target.state_dict()
        for tensor_name, tensor in written.items():
            assert torch.equal(state[tensor_name], tensor.float()), (alpha, tensor_name)


def test_cache_keys_change_with_everything_that_changes_a_result(monkeypatch):
    from rv_merge.evaluate import result_cache
    from rv_merge.evaluate.context import Backend
    from rv_merge.evaluate.jobs import Job, ModelUnderTest
    from rv_merge.recipe.schema import SteeringSettings

    job, settings = Job(ModelUnderTest("target", Path("x"), "fp"), "rv_sciq"), suite_settings()
    key = result_cache.job_key(job, settings, Backend(), "task-fp")
    assert key == result_cache.job_key(job, settings, Backend(), "task-fp")
    assert key != result_cache.job_key(job, settings, Backend(device="cuda"), "task-fp")
    assert key != result_cache.job_key(job, settings, Backend(dtype="bfloat16"), "task-fp")
    # what else the recipe evaluates does not change this job's result, so it shares the cache
    others = settings.model_copy(update={"steering": SteeringSettings(vectors="v", scales=[2.0]),
                                         "alphas": [0.5, 1.0], "think": not settings.think})
    assert key == result_cache.job_key(job, others, Backend(), "task-fp")
    real = result_cache.version
    monkeypatch.setattr(result_cache, "version", lambda name: "9.9" if name == "lm_eval" else real(name))
    result_cache._library_versions.cache_clear()  # versions are read once per process
    try:
        assert key != result_cache.job_key(job, settings, Backend(), "task-fp")  # e.g. other BBH exemplars
    finally:
        monkeypatch.undo()
        result_cache._library_versions.cache_clear()


def test_merge_keys_cover_the_kernel_and_mergekit(monkeypatch, toy):
    from rv_merge.merge import model_store
    from rv_merge.recipe.loading import validate_recipe

    recipe = validate_recipe(recipe_dict(toy["target"], toy["sft"], toy["grpo"]), "r.yml")
    key = model_store.merge_key(recipe, {"target": "a"})
    monkeypatch.setattr(model_store, "kernel_fingerprint", lambda: "another kernel")
    assert model_store.merge_key(recipe, {"target": "a"}) != key
    monkeypatch.undo()
    real = model_store.version
    monkeypatch.setattr(model_store, "version", lambda name: "0.1.99" if name == "mergekit" else real(name))
    assert model_store.merge_key(recipe, {"target": "a"}) != key


@pytest.mark.parametrize("module", ["arithmetic", "cpu_kernel", "method"])
def test_the_kernel_fingerprint_changes_with_each_module_that_computes_merged_values(module, monkeypatch, tmp_path):
    """cpu_kernel.py, where the CPU merges happen, was once left out of the fingerprint."""
    import importlib

    from rv_merge.merge import model_store

    code = importlib.import_module(f"rv_merge.merge.{module}")
    model_store.kernel_fingerprint.cache_clear()
    before = model_store.kernel_fingerprint()
    edited = tmp_path / f"{module}.py"
    edited.write_bytes(Path(code.__file__).read_bytes() + b"# edited\n")
    monkeypatch.setattr(code, "__file__", str(edited))
    model_store.kernel_fingerprint.cache_clear()
    try:
        assert model_store.kernel_fingerprint() != before
    finally:
        model_store.kernel_fingerprint.cache_clear()  # computed again from the real files


def test_an_alpha_sweep_passes_the_merge_checks_and_has_its_own_cache_key(trios, tmp_path):
    """A sweep used to skip the compatibility checks and the NaN screen, ignore
    `tokenizer_source`, and share its cache key with the merge written to disk."""
    from rv_merge.errors import CompatibilityError, RecipeError
    from rv_merge.evaluate.conditions import conditions_for
    from rv_merge.merge.in_memory import InMemoryMerge
    from rv_merge.merge.model_store import merge_key
    from rv_merge.recipe.loading import validate_recipe
    from rv_merge.recipe.model_locations import fingerprint_model
    from tests.conftest import copy_model

    toy = trios()
    grpo = copy_model(toy["grpo"], tmp_path / "grpo")
    tensors = load_tensors(grpo)
    tensors["model.norm.weight"][0] = float("nan")
    save_tensors(grpo, tensors)
    with pytest.raises(CompatibilityError, match="contains NaN or Inf"):
        merge = InMemoryMerge(validate_recipe(recipe_dict(toy["target"], toy["sft"], grpo), "nan.yml"), "nan.yml")
        merge.tensor("model.norm.weight", 1.0)
    from rv_merge.demo.toy_models import build_tokenizer

    other_ids = copy_model(toy["sft"], tmp_path / "sft")
    build_tokenizer(other_ids, corpus_seed=1)  # same size, another token-to-id mapping
    with pytest.raises(CompatibilityError, match="tokenizers differ"):
        InMemoryMerge(validate_recipe(recipe_dict(toy["target"], other_ids, toy["grpo"]), "t.yml"), "t.yml")
    aligned = {**recipe_dict(toy["target"], toy["sft"], toy["grpo"]), "tokenizer_source": "base"}
    with pytest.raises(RecipeError, match="does not align vocabularies"):
        InMemoryMerge(validate_recipe(aligned, "a.yml"), "a.yml")

    recipe = validate_recipe({**recipe_dict(toy["target"], toy["sft"], toy["grpo"]),
                              "eval": {"tasks": ["rv_sciq"], "alphas": [0.5, 1.0]}}, "s.yml")
    conditions = conditions_for(recipe, "s.yml", recipe.eval, tmp_path / "store")
    inputs = {role: fingerprint_model(ref, "s.yml") for role, ref in {"target": recipe.target, **recipe.sources}.items()}
    assert conditions.models["merged"].fingerprint != merge_key(recipe, inputs)
    assert not (tmp_path / "store").exists()  # nothing merged to disk


def _responses(store: Path, label: str, task: str) -> list[str]:
    found = [json.loads(p.read_text()) for p in (store / "results").glob("*.json")]
    found = [r for r in found if r["model"] == label and r["task"] == task]
    assert len(found) == 1, (label, task, len(found))
    return found[0]["details"]["responses"]


def test_steering_vectors_are_evaluated_by_hooks_on_the_target(workspace, monkeypatch, tmp_path, capsys):
    """eval.steering: each scale is the target with hooks; scale 0 reproduces the target's
    generations exactly even right after an in-memory sweep rewrote the loaded weights (the
    target is reloaded), a large scale changes them, and the report has the rows. Two entries
    (the same file under another name) each get their rows and their think variant."""
    from rv_merge.steering.artifact import new_vectors, save_vectors

    root, models, env = workspace
    generator = torch.Generator().manual_seed(0)
    config = json.loads((Path(models["target"]) / "config.json").read_text())
    shape = (config["num_hidden_layers"], config["hidden_size"])
    vectors = new_vectors(Path(models["target"]), 40.0 * torch.randn(*shape, generator=generator), {"method": "test"})
    save_vectors(vectors, root / "steer", Path(models["target"]))
    settings = {"tasks": ["rv_gsm8k"], "limit": 3, "num_fewshot": 1, "max_gen_toks": 8, "think": True,
                "baselines": ["target"], "alphas": [1.0, 300.0],
                "steering": [{"vectors": str(root / "steer"), "scales": [0, 1.0]},
                             {"vectors": str(root / "steer"), "name": "again", "scales": [1.0]}]}
    write_recipe(root / "steered.yml", {**recipe_dict(models["target"], models["sft"], models["grpo"]),
                                        "eval": settings})
    store = root / "steer-store"
    meta = rv_eval(root, {**env, "RV_STORE": str(store)}, monkeypatch, "steered.yml")
    assert meta["steering"]["conditions"] == [{"label": "steer:steer=0", "vectors": "steer", "scale": 0},
                                              {"label": "steer:steer=1", "vectors": "steer", "scale": 1.0},
                                              {"label": "steer:again=1", "vectors": "again", "scale": 1.0}]
    assert [entry["name"] for entry in meta["steering"]["entries"]] == ["steer", "again"]
    order = [r["model"] for r in meta["results"]]
    assert order.index("alpha=300") < order.index("steer:steer=0")  # the sweep ran first: a reload was needed
    target = _responses(store, "target", "rv_gsm8k")
    assert _responses(store, "steer:steer=0", "rv_gsm8k") == target
    assert _responses(store, "alpha=300", "rv_gsm8k") != target
    assert _responses(store, "steer:steer=1", "rv_gsm8k") != target
    assert {(r["model"], r["task"]) for r in meta["results"] if r["task"] == "rv_gsm8k_think"} >= {
        ("steer:steer=0", "rv_gsm8k_think"), ("steer:again=1", "rv_gsm8k_think")}
    assert meta["jobs_cached"] >= 1  # `again` at scale 1 is `steer` at scale 1: one result, from the cache
    text = (root / "reports" / "steered" / "report.md").read_text()
    assert "## Steering vectors" in text and "| rv_gsm8k | target + 1 x steer |" in text
    assert "| rv_gsm8k | target + 0 x steer + think |" in text and "| rv_gsm8k | target + 1 x again |" in text

    for change, message in (({"vectors": str(tmp_path / "none")}, "eval.steering none"),
                            ({"vectors": str(root / "steer"), "layers": [0, 99]}, "the target has layers 0-"),
                            ({"vectors": str(root / "steer"), "scales": [1, 1]}, "lists a value twice"),
                            ([{"vectors": str(root / "steer")}, {"vectors": str(tmp_path / "steer")}],
                             "names ['steer'] twice")):
        write_recipe(root / "bad-steer.yml", {**recipe_dict(models["target"], models["sft"], models["grpo"]),
                                              "eval": {**settings, "steering": change}})
        assert main(["eval", str(root / "bad-steer.yml"), "--data", str(REPO / "evals" / "data"),
                     "--reports", str(root / "bad-steer-reports")]) == 2
        assert message in capsys.readouterr().err
        assert not (root / "bad-steer-reports").exists()


def test_a_task_fingerprint_covers_the_code_its_hooks_run_and_only_that(tmp_path, monkeypatch):
    """Editing the sandbox or the code perturbations re-runs HumanEval but not GSM8K; editing
    the shared perturbations re-runs both; the sandbox's harness (run as text, not imported)
    counts for HumanEval."""
    from rv_merge.evaluate import result_cache

    sources = tmp_path / "evaluate"
    shutil.copytree(result_cache.EVALUATE_SOURCES, sources, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(result_cache, "EVALUATE_SOURCES", sources)
    tasks = REPO / "evals" / "tasks"

    def prints() -> dict[str, str]:
        return {task: result_cache.task_fingerprint(task, tasks, None) for task in ("rv_gsm8k", "rv_humaneval")}

    before = prints()
    for name, changed in (("sandbox.py", {"rv_humaneval"}), ("sandbox_harness.py", {"rv_humaneval"}),
                          ("perturb.py", {"rv_gsm8k", "rv_humaneval"}), ("perturb_code.py", {"rv_humaneval"}),
                          ("conditions.py", set())):
        with open(sources / name, "a") as handle:
            handle.write("\n# edited\n")
        after = prints()
        assert {task for task in after if after[task] != before[task]} == changed, name
        before = after
