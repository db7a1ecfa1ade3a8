"""Run console scripts (mergekit-yaml, rv) in processes forked after their imports.

Importing mergekit costs about 10 s here (it imports peft, which imports most of torch and
transformers), and most of the suite's subprocess runs would spend that before a refusal
that takes milliseconds. So each pytest worker starts one server process that imports what
the scripts import, once, with the startup hook active as in any interpreter; every run
is then a fork of it that executes the real console script file from the venv's bin with
its own argv, cwd, stdout and stderr, exactly as `mergekit-yaml ...` would after its imports.

What a fork cannot reproduce is what happens at import time: the hook's reading of
RV_MERGE_ALLOW_PICKLE, huggingface_hub's of HF_HOME and HF_HUB_OFFLINE. Runs whose environment
differs from the server's in anything but FORKABLE_ENV (read by rv's command line when it
runs) are started as ordinary subprocesses by the caller (tests/conftest.py), as are the
tests of the hook and of imports themselves.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import runpy
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

FORKABLE_ENV = {"RV_STORE", "RV_EVAL_DATA", "RV_TASKS_DIR"}
PRELOADED = ["mergekit.scripts.run_yaml", "mergekit.merge", "rv_merge.cli", "rv_merge.vectors.commands",
             "rv_merge.evaluate.runner", "lm_eval"]


class ForkServer:
    """The client: one server process, started lazily, serving one request at a time."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self._server: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._outputs = Path(tempfile.mkdtemp(prefix="rv-forked-"))
        self._numbers = itertools.count()

    def can_run(self, env: dict[str, str]) -> bool:
        changed = {key for key in set(env) | set(self.env) if env.get(key) != self.env.get(key)}
        return changed <= FORKABLE_ENV

    def start(self, script: Path, args: list[str], env: dict[str, str], cwd=None) -> int:
        """Fork a run of `script args`; returns its pid (the leader of its own session)."""
        number = next(self._numbers)
        request = {"op": "start", "script": str(script), "args": [str(a) for a in args],
                   "cwd": str(cwd or os.getcwd()), "env": {key: env.get(key) for key in FORKABLE_ENV},
                   "stdout": str(self._outputs / f"{number}.out"), "stderr": str(self._outputs / f"{number}.err")}
        return self._ask(request)["pid"]

    def wait(self, pid: int, timeout: float = 600) -> subprocess.CompletedProcess:
        """Wait for a forked run (killing it after `timeout` s), with its exit code and output."""
        deadline = time.monotonic() + timeout
        while (reply := self._ask({"op": "poll", "pid": pid}))["returncode"] is None:
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):  # it ended in the meantime
                    os.killpg(pid, signal.SIGKILL)
                reply = self._ask({"op": "wait", "pid": pid})
                raise subprocess.TimeoutExpired(reply["args"], timeout)
            time.sleep(0.02)
        return subprocess.CompletedProcess(reply["args"], reply["returncode"], Path(reply["stdout"]).read_text(),
                                           Path(reply["stderr"]).read_text())

    def run(self, script: Path, args: list[str], env: dict[str, str], cwd=None) -> subprocess.CompletedProcess:
        return self.wait(self.start(script, args, env, cwd))

    def pid(self) -> int | None:
        """The server's process id, once started."""
        return None if self._server is None else self._server.pid

    def close(self) -> None:
        if self._server is not None:
            self._server.stdin.close()
            self._server.wait(timeout=60)
        shutil.rmtree(self._outputs, ignore_errors=True)

    def ready(self) -> None:
        """Start the server unless it runs, and wait for its imports (~15 s): call this before
        timing a run."""
        with self._lock:
            if self._server is None:
                self._server = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE,
                                                stdout=subprocess.PIPE, env=self.env, text=True)
                self._reply()  # the server's first line: imported, or why it cannot serve

    def _ask(self, request: dict) -> dict:
        self.ready()
        with self._lock:
            self._server.stdin.write(json.dumps(request) + "\n")
            self._server.stdin.flush()
            return self._reply()

    def _reply(self) -> dict:
        line = self._server.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server died (exit code {self._server.poll()})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"fork server: {reply['error']}")
        return reply


def serve() -> None:
    """The server: import, then answer start/poll/wait requests from stdin on stdout."""
    for module in PRELOADED:
        __import__(module)
    # A fork copies only the forking thread, so no Python thread may run. (torch, mergekit's
    # imports and pyarrow's jemalloc leave idle native helper threads; torch and jemalloc
    # reset their state in a forked child, and the suite's runs exercise both.)
    if threading.active_count() != 1:
        names = [thread.name for thread in threading.enumerate()]
        print(json.dumps({"error": f"Python threads {names} run after the imports; forking is not safe"}), flush=True)
        return
    print(json.dumps({"ready": True}), flush=True)
    runs: dict[int, dict] = {}
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "start":
            ready, child_ready = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(ready)
                _run_script(request, child_ready)
            os.close(child_ready)
            os.read(ready, 1)  # the child leads its own session now: the caller may kill it by group
            os.close(ready)
            runs[pid] = {"args": [request["script"], *request["args"]], "stdout": request["stdout"],
                         "stderr": request["stderr"], "returncode": None}
            reply = {"pid": pid}
        else:
            run = runs[request["pid"]]
            if run["returncode"] is None:
                done, status = os.waitpid(request["pid"], os.WNOHANG if request["op"] == "poll" else 0)
                if done:
                    run["returncode"] = os.waitstatus_to_exitcode(status)
            reply = run
        print(json.dumps(reply), flush=True)


def _run_script(request: dict, ready: int) -> None:
    """In the fork: become the console script, then exit as the interpreter would."""
    code = 1
    try:
        os.setsid()
        os.write(ready, b"1")
        os.close(ready)
        os.chdir(request["cwd"])
        for key, value in request["env"].items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for descriptor, path in ((0, os.devnull), (1, request["stdout"]), (2, request["stderr"])):
            opened = os.open(path, os.O_RDONLY if descriptor == 0 else os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(opened, descriptor)
            os.close(opened)
        sys.argv = [request["script"], *request["args"]]
        try:
            runpy.run_path(request["script"], run_name="__main__")
            code = 0
        except SystemExit as stop:
            if stop.code is None or isinstance(stop.code, int):
                code = stop.code or 0
            else:
                print(stop.code, file=sys.stderr)
        except BaseException:  # noqa: BLE001 - reported as the interpreter reports it
            sys.excepthook(*sys.exc_info())
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


if __name__ == "__main__":
    serve()
