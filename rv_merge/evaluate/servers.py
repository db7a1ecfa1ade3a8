"""Evaluate through inference servers that rv starts: `rv eval --backend server --serve TEMPLATE`.

TEMPLATE is the command that serves one model, for example
`vllm serve {model} --port {port} --tensor-parallel-size 4` or
`transformers serve {model} --host 127.0.0.1 --port {port} --dtype float32`; `{model}` is the
model's local folder, `{port}` a free loopback port, `{gpu}` (optional) the worker's index,
given to the server as CUDA_VISIBLE_DEVICES. For each group of jobs rv starts a server,
waits for its /health endpoint (a clear error with the server's last log lines if it exits
or times out), runs lm-eval's `local-completions` (`local-chat-completions` for recipes
that apply the chat template) against it, and stops it, also on Ctrl-C and on errors. The
server is started under `setpriv --pdeathsig KILL` (util-linux), so it dies with rv even
after a `kill -9`. `--parallel N` runs N groups at once, each with its own server: a model's jobs
stay on one server unless there are fewer models than N, and results go through the same
cache as any other backend (computed only after a job finished, so a failed server leaves
nothing partial behind).
"""

from __future__ import annotations

import itertools
import os
import shlex
import signal
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from lm_eval.tasks import TaskManager

from rv_merge.errors import ServerError, describe_error
from rv_merge.evaluate.context import Backend, EvalContext
from rv_merge.evaluate.jobs import Job, JobResult
from rv_merge.evaluate.lm_eval_job import evaluate_job
from rv_merge.recipe.schema import EvalSettings

LOG_LINES = 15


class Server:
    """One server process for one model folder, from the command template."""

    def __init__(self, template: str, model: Path, gpu: int, timeout_s: float, log_dir: Path):
        self.port = _free_port()
        model = model.resolve()
        command = shlex.split(template.format(model=model, port=self.port, gpu=gpu))
        if command and not shutil.which(command[0]) and (Path(sys.executable).parent / command[0]).is_file():
            command[0] = str(Path(sys.executable).parent / command[0])  # a program of this environment
        if "{gpu}" in template:
            command = ["env", f"CUDA_VISIBLE_DEVICES={gpu}", *command]
        self.command, self.model, self.timeout_s = command, model, timeout_s
        self.log_path = log_dir / f"server-{self.port}.log"
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "Server":
        with open(self.log_path, "wb") as log:
            try:
                dies_with_rv = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
                self.process = subprocess.Popen([*dies_with_rv, *self.command],
                                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True)
            except OSError as error:
                raise ServerError(f"cannot start `{shlex.join(self.command)}`: {error}") from None
        deadline = time.monotonic() + self.timeout_s
        while not self._healthy():
            if self.process.poll() is not None:
                self.stop()
                raise ServerError(f"the server for {self.model} exited with status {self.process.returncode} "
                                  f"before it was ready; `{shlex.join(self.command)}` said:\n{self.last_lines()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"the server for {self.model} was not ready after {self.timeout_s:g} s "
                                  f"(--serve-timeout); its last lines:\n{self.last_lines()}")
            time.sleep(0.5)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL after 15 s."""
        if self.process is None or self.process.returncode is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(timeout=15)
                return
            except ProcessLookupError:
                self.process.wait()
                return
            except subprocess.TimeoutExpired:
                continue

    def failure(self, job: Job, error: Exception) -> ServerError:
        """The error to report when a job failed against this server."""
        state = (f"exited with status {self.process.returncode}" if self.process.poll() is not None
                 else f"answered badly ({describe_error(error, limit=300)})")
        return ServerError(f"the server for {job.model.label} ({self.model}) {state} during {job.task}; "
                           f"nothing was cached for this job. Its last lines:\n{self.last_lines()}")

    def last_lines(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.strip().splitlines()[-LOG_LINES:]) or "(no output)"

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False


def model_args(server: Server, backend: Backend, settings: EvalSettings) -> tuple[str, str]:
    """lm-eval's API model name and model_args for one server (prompts sent as text, one per request)."""
    chat = settings.apply_chat_template
    endpoint = "chat/completions" if chat else "completions"
    args = (f"base_url={server.base_url}/v1/{endpoint},model={server.model},tokenizer={server.model},"
            f"tokenizer_backend=huggingface,tokenized_requests=False,max_retries=2")
    return ("local-chat-completions" if chat else "local-completions"), args + (
        f",{backend.model_args}" if backend.model_args else "")


def run_on_servers(jobs: list[Job], settings: EvalSettings, context: EvalContext,
                   started: Callable[[Job], None], finished: Callable[[Job, JobResult], None]) -> None:
    """Run `jobs` through servers, `context.backend.parallel` at a time; `started` and
    `finished` are called (from the worker's thread) as each job starts and is done."""
    backend = context.backend
    settings = settings.model_copy(update={"batch_size": 1})  # text prompts go one per request
    gpus, live, lock, stopping = itertools.count(), set(), threading.Lock(), threading.Event()
    with tempfile.TemporaryDirectory(prefix="rv-servers-") as logs:

        def work(group: list[Job]) -> None:
            if stopping.is_set():
                return
            with lock:
                gpu = next(gpus) % backend.parallel
            task_manager = TaskManager(include_path=str(context.tasks_dir), include_defaults=False,
                                       metadata=context.task_metadata)
            server = Server(backend.serve, group[0].model.path, gpu, backend.serve_timeout, Path(logs))
            with lock:
                live.add(server)
            try:
                with server:
                    name, args = model_args(server, backend, settings)
                    for job in group:
                        if stopping.is_set():
                            return
                        started(job)
                        try:
                            result = evaluate_job(name, args, job, backend, settings, task_manager)
                        except Exception as error:
                            raise server.failure(job, error) from None
                        finished(job, result)
            finally:
                with lock:
                    live.discard(server)

        pool = ThreadPoolExecutor(max_workers=backend.parallel)
        try:
            for future in [pool.submit(work, group) for group in _groups(jobs, backend.parallel)]:
                future.result()
        except BaseException:  # a failure, Ctrl-C: stop every server now, then wait for the workers
            stopping.set()
            with lock:
                running = list(live)
            for server in running:
                server.stop()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _groups(jobs: list[Job], parallel: int) -> list[list[Job]]:
    """A model's jobs together; split further when there are fewer models than workers."""
    by_model: dict[str, list[Job]] = {}
    for job in jobs:
        by_model.setdefault(job.model.label, []).append(job)
    parts = max(1, -(-parallel // max(1, len(by_model))))
    return [chunk for model_jobs in by_model.values() for chunk in _split(model_jobs, parts)]


def _split(items: list, parts: int) -> list[list]:
    size = -(-len(items) // parts)
    return [items[i:i + size] for i in range(0, len(items), size)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
