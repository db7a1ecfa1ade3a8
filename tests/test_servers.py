"""`rv eval --backend server`: real `transformers serve` processes on loopback, one per model,
give the same generations as the in-process hf backend; servers that fail to start, die or
answer garbage give one clear error and cache nothing; no server outlives rv, even on Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import BIN, OFFLINE_ENV, recipe_dict, write_recipe

pytestmark = pytest.mark.xdist_group("servers")
REPO = Path(__file__).resolve().parents[1]
SERVE = "transformers serve {model} --host 127.0.0.1 --port {port} --dtype float32"
FAKE = f"{sys.executable} {Path(__file__).parent / 'servers' / 'fake_server.py'} --port {{port}} --model {{model}}"
EVAL = {"tasks": ["rv_gsm8k", "rv_humaneval"], "limit": 2, "num_fewshot": 1, "max_gen_toks": 8, "think": False}


@pytest.fixture(scope="module")
def recipe(trios, tmp_path_factory):
    toy = trios()
    return write_recipe(tmp_path_factory.mktemp("servers") / "served.yml",
                        {**recipe_dict(toy["target"], toy["sft"], toy["grpo"]), "eval": EVAL})


def rv_eval(recipe: Path, store: Path, *flags: str, reports: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "rv"), "eval", str(recipe), "--data", str(REPO / "evals" / "data"),
                           "--reports", str(reports or store / "reports"), *flags],
                          env={**OFFLINE_ENV, "RV_STORE": str(store)}, capture_output=True, text=True, timeout=900)


def cached(store: Path) -> dict[tuple[str, str], dict]:
    results = {}
    for path in (store / "results").glob("*.json"):
        data = json.loads(path.read_text())
        results[(data["model"], data["task"])] = data
    return results


def servers_of(folder: Path) -> list[psutil.Process]:
    """Processes still serving a model under `folder` (the toy models' tmp folder)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if str(folder) in command and ("serve" in command or "fake_server" in command):
            found.append(process)
    return found


def test_served_generations_equal_the_in_process_ones(recipe, tmp_path):
    """Three servers (target, GRPO, merged), two at a time; every generated text matches hf."""
    served = rv_eval(recipe, tmp_path / "served", "--backend", "server", "--serve", SERVE, "--parallel", "2")
    assert served.returncode == 0, served.stderr[-3000:]
    assert rv_eval(recipe, tmp_path / "local").returncode == 0
    remote, local = cached(tmp_path / "served"), cached(tmp_path / "local")
    assert set(remote) == set(local) and len(remote) == 6
    for key, result in remote.items():
        texts = result["details"]["responses"]
        assert texts == local[key]["details"]["responses"] and all(isinstance(t, str) for t in texts), key
        assert result["per_sample"] == local[key]["per_sample"], key
        assert result["computed_with"]["serve"] == SERVE  # keyed by the command, never by a URL or port
    assert (tmp_path / "served" / "reports" / "served" / "report.md").is_file()
    assert servers_of(Path(recipe_dict_target(recipe)).parent) == []


def recipe_dict_target(recipe: Path) -> str:
    import yaml

    return yaml.safe_load(recipe.read_text())["base_model"]


def test_loglikelihood_tasks_are_refused_up_front_for_transformers_serve(recipe, tmp_path):
    import yaml

    data = yaml.safe_load(recipe.read_text())
    data["eval"]["tasks"] = ["rv_gsm8k", "rv_sciq"]
    path = write_recipe(tmp_path / "loglik.yml", data)
    result = rv_eval(path, tmp_path / "store", "--backend", "server", "--serve", SERVE)
    assert result.returncode == 2
    assert "rv_sciq score answers by log-likelihood" in result.stderr and "transformers serve ignores" in result.stderr
    assert not (tmp_path / "store" / "results").exists() or not list((tmp_path / "store" / "results").iterdir())


@pytest.mark.parametrize("serve, message", [
    (SERVE + " --no-such-option", "exited with status 2 before it was ready"),
    (FAKE + " --mode garbage", "answered badly"),
    (FAKE + " --mode die", "exited with status 3 during rv_gsm8k"),
], ids=["fails to start", "garbage", "dies mid-run"])
def test_a_failing_server_gives_one_clear_error_and_caches_nothing(recipe, tmp_path, serve, message):
    result = rv_eval(recipe, tmp_path / "store", "--backend", "server", "--serve", serve, "--serve-timeout", "120")
    assert result.returncode == 2, result.stderr[-2000:]
    errors = result.stderr.split("rv eval: error:")[1:]  # progress bars may precede it on its line
    assert len(errors) == 1 and message in errors[0].splitlines()[0], result.stderr[-2000:]
    assert list((tmp_path / "store" / "results").glob("*.json")) == []
    assert servers_of(Path(recipe_dict_target(recipe)).parent) == []


def test_ctrl_c_stops_every_server(recipe, tmp_path):
    command = [str(BIN / "rv"), "eval", str(recipe), "--data", str(REPO / "evals" / "data"), "--reports",
               str(tmp_path / "reports"), "--backend", "server", "--serve", FAKE + " --mode slow", "--parallel", "2"]
    process = subprocess.Popen(command, env={**OFFLINE_ENV, "RV_STORE": str(tmp_path / "store")},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    models = Path(recipe_dict_target(recipe)).parent
    deadline = time.monotonic() + 120
    while len(servers_of(models)) < 2:  # two slow servers up and busy
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.5)
    time.sleep(3)
    process.send_signal(signal.SIGINT)
    # Generous: under a loaded CI machine, stopping two busy servers (SIGTERM, SIGKILL after
    # 15 s each) and letting the workers' failing requests end took over 120 s once.
    process.wait(timeout=300)
    assert process.returncode != 0
    time.sleep(1)
    assert servers_of(models) == []
