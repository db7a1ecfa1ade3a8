"""Hostile completions: the evaluating process survives, nothing outside the sandbox
changes, and each sample is scored as failed with the reason."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import psutil
import pytest

from rv_merge.evaluate import humaneval
from rv_merge.evaluate.sandbox import Limits, isolation, run_program
from tests.conftest import stray_processes

PROMPT = "import os, socket, sys\n\n\ndef add_one(x):\n"
TEST = "def check(candidate):\n    assert candidate(1) == 2\n"


def doc() -> dict:
    return {"prompt": PROMPT, "test": TEST, "entry_point": "add_one"}


@pytest.fixture(autouse=True)
def short_limits(monkeypatch):
    monkeypatch.setattr(humaneval, "LIMITS", Limits(timeout_s=3, cpu_s=3, memory_mb=512))


def score(completion: str) -> dict:
    [[result]] = humaneval.execute([[completion]], [doc()])
    assert humaneval.score(doc(), [[result]]) == {"pass@1": float(result["passed"])}
    return result


def test_a_correct_completion_passes():
    assert score("    return x + 1\n") == {"completion": "    return x + 1\n", "passed": True, "reason": "passed"}


def test_a_wrong_completion_fails_with_the_assertion():
    result = score("    return x\n")
    assert not result["passed"] and "AssertionError" in result["reason"]


@pytest.mark.parametrize("body, reason", [
    ("    while True:\n        pass\n", ("timed out", "CPU time")),
    ("    data = bytearray(8 * 1024 ** 3)\n    return x + 1\n", ("memory limit",)),
    ("    print('x' * 200_000_000)\n    return x + 1\n", ("File too large", "output limit")),
    ("    while True:\n        os.fork()\n", ("sandbox: os.fork is not allowed",)),
])
def test_resource_attacks_fail_with_a_reason(body, reason):
    result = score(body)
    assert not result["passed"]
    assert any(r in result["reason"] for r in reason), result["reason"]
    assert stray_processes() == []  # no stray process survives


def test_writing_and_deleting_outside_the_sandbox_fails(tmp_path):
    """Writes are refused by the OS (read-only mounts, private /tmp, an unprivileged user), not by
    the audit hook."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)  # even a world-writable folder is out of reach
    victim = shared / "victim.txt"
    victim.write_text("precious")
    victim.chmod(0o666)
    outside = tmp_path / "created-by-sandbox.txt"
    for body in (f"    open({str(victim)!r}, 'w').write('gone')\n    return x + 1\n",
                 f"    os.remove({str(victim)!r})\n    return x + 1\n",
                 f"    open({str(outside)!r}, 'w').write('x')\n    return x + 1\n",
                 f"    open({os.getcwd() + '/rv-sandbox-was-here'!r}, 'w').write('x')\n    return x + 1\n"):
        result = score(body)
        assert not result["passed"] and ("Error" in result["reason"]), result["reason"]
    assert victim.read_text() == "precious"
    assert not outside.exists() and not os.path.exists(os.getcwd() + "/rv-sandbox-was-here")


def test_network_is_unreachable():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        result = score(f"    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    return x + 1\n")
        assert not result["passed"] and result["reason"] == "PermissionError: sandbox: socket.connect is not allowed"
        with pytest.raises(socket.timeout):
            listener.accept()  # nothing ever connected


def test_killing_the_parent_or_the_evaluator_fails_and_we_survive():
    me = os.getpid()
    for body in ("    os.kill(os.getppid(), 9)\n    return x + 1\n",
                 f"    os.kill({me}, 9)\n    return x + 1\n",
                 "    os.killpg(0, 9)\n    return x + 1\n"):
        result = score(body)
        assert not result["passed"], body
        assert "sandbox: os.kill" in result["reason"], result["reason"]
    assert psutil.pid_exists(me)


def test_environment_is_clean(monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "do-not-leak")
    outcome = run_program("import os, sys\nassert 'SECRET_TOKEN' not in os.environ\n"
                          "assert sys.flags.isolated\n")
    assert outcome.passed, outcome.reason


def test_isolation_is_reported():
    description = isolation()
    assert "rlimits" in description
    if os.geteuid() == 0:  # CI and this project's machines run as root: full isolation expected
        assert "no network" in description and "user id of its own" in description


def test_an_interpreter_that_cannot_start_is_an_error_not_a_failed_program(monkeypatch):
    """Nothing ran: that must stop the evaluation, not be scored as the model's failure."""
    from rv_merge.errors import SandboxError
    from rv_merge.evaluate import sandbox

    monkeypatch.setattr(sandbox, "_isolation_command", lambda: ([], "/no/such/python", False))
    with pytest.raises(SandboxError, match="cannot start the sandboxed interpreter /no/such/python"):
        run_program("print('hi')\n")


# Both tests below run processes as `nobody`, whose count is what a non-root evaluator's process
# limit is set from: they must not run at the same time (pytest -n), or each breaks the other.
@pytest.mark.xdist_group("runs-as-nobody")
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv") or not os.path.isdir("/var/cache"),
                    reason="needs root to become another user, and /var/cache")
def test_as_a_non_root_evaluator_own_files_are_safe_and_own_threads_do_not_count():
    """The evaluator runs as `nobody` here: the program cannot write nobody's own files (the
    sandbox's filesystem is read-only), and the evaluator's 80 threads, which RLIMIT_NPROC
    counts for the same user, do not make a 16-process limit fail."""
    import json
    import subprocess
    import sys
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="rv-sandbox-nonroot-", dir="/var/cache"))  # not under /tmp: the
    # sandbox mounts a private /tmp, so a file there would be out of sight rather than read-only
    try:
        folder.chmod(0o755)
        victim = folder / "victim.txt"
        victim.write_text("precious")
        os.chown(folder, 65534, 65534), os.chown(victim, 65534, 65534)
        script = (
            "import json, sys, threading\n"
            "from rv_merge.evaluate.sandbox import Limits, isolation, run_program\n"
            "stop = threading.Event()\n"
            "threads = [threading.Thread(target=stop.wait, daemon=True) for _ in range(80)]\n"
            "[t.start() for t in threads]\n"
            "ok = run_program('x = 1', limits=Limits(processes=16))\n"
            "write = run_program(f'open({sys.argv[1]!r}, \"w\").write(\"gone\")')\n"
            "stop.set()\n"
            "print(json.dumps({'isolation': isolation(), 'ok': ok.reason, 'write': write.reason}))\n")
        result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                                 "--bounding-set=-all", sys.executable,
                                 "-c", script, str(victim)], cwd=folder, capture_output=True, text=True,
                                env={"PATH": "/usr/bin:/bin", "HOME": str(folder)}, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert report["ok"] == "passed", report
        assert "read-only filesystem" in report["isolation"], report
        assert "Read-only file system" in report["write"], report
        assert victim.read_text() == "precious"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_process_that_ends_while_processes_are_counted_is_skipped(monkeypatch):
    """Counting the user's processes races with processes ending (found by CI): a pid
    listed in /proc whose folder is gone by the time it is read must not stop the run."""
    from rv_merge.evaluate import sandbox

    real_listdir = os.listdir
    monkeypatch.setattr(sandbox.os, "listdir",
                        lambda path: [*real_listdir(path), "999999999"] if path == "/proc" else real_listdir(path))
    assert sum(sandbox._tasks_by_uid().values()) > 0  # counted, not raised
    assert score("    return x + 1\n")["passed"]


@pytest.mark.xdist_group("runs-as-nobody")
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to become another user")
def test_processes_another_user_starts_during_a_run_do_not_stop_it(monkeypatch):
    """Found by CI: programs ran as the shared `nobody`, and RLIMIT_NPROC counts a user's
    processes machine-wide, so 80 threads another test started as nobody after the count
    made a correct program fail to start (EAGAIN). Each run now has a user id of its own."""
    import subprocess
    import sys

    from rv_merge.evaluate import sandbox

    snapshot = sandbox._tasks_by_uid()  # taken before the crowd arrives, as in the race
    monkeypatch.setattr(sandbox, "_tasks_by_uid", lambda: snapshot)
    crowd = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                              "import threading, sys\nthreads = [threading.Thread(target=sys.stdin.read) for _ in "
                              "range(40)]\n[t.start() for t in threads]\nprint('up', flush=True)\n[t.join() for t in threads]"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert crowd.stdout.readline() == "up\n"
        outcome = run_program("import os\nassert os.getuid() != 65534\n", limits=sandbox.Limits(processes=16))
        assert outcome.passed, outcome.reason
    finally:
        crowd.stdin.close()
        crowd.wait(timeout=30)


def test_runs_take_turns_through_the_sandbox_user_ids_and_skip_those_in_use():
    import collections

    from rv_merge.errors import SandboxError
    from rv_merge.evaluate import sandbox

    uids = sandbox.SANDBOX_UIDS
    first = sandbox._unused_uid(collections.Counter())
    after, after_that = (uids[(uids.index(first) + step) % len(uids)] for step in (1, 2))
    assert sandbox._unused_uid(collections.Counter({after: 3})) == after_that
    with pytest.raises(SandboxError, match="every sandbox user id"):
        sandbox._unused_uid(collections.Counter({uid: 1 for uid in sandbox.SANDBOX_UIDS}))
