"""A corpus of hostile completions, each a different escape: every one is scored as failed,
with its own reason, and the evaluating process survives with no stray process.

Most would have passed before the harness proved that the tests ran to their end (a wrong
answer followed by an exit with status 0), or reached the nonce that proves it."""

from __future__ import annotations

import pytest

from rv_merge.evaluate import humaneval
from rv_merge.evaluate.sandbox import Limits
from tests.conftest import stray_processes

PROMPT = "import os, sys\n\n\ndef add_one(x):\n"
EQUALS = "def check(candidate):\n    assert candidate(1) == 2\n"
ABS = "def check(candidate):\n    assert abs(candidate(1) - 2) < 1e-9\n"
ISCLOSE = "import math\n\n\ndef check(candidate):\n    assert math.isclose(candidate(1), 2)\n"
WRONG = "    return x\n"  # every escape below comes with a wrong answer unless it says otherwise

CORPUS = {  # name: (completion, tests, what the reason must say)
    "sys.exit(0) at module level": (WRONG + "sys.exit(0)\n", EQUALS, "early exit: SystemExit(0)"),
    "raise SystemExit in the function": ("    raise SystemExit(0)\n", EQUALS, "early exit: SystemExit(0)"),
    "os._exit(0) at module level": (WRONG + "os._exit(0)\n", EQUALS, "status 0 before the tests finished"),
    "os._exit(0) during the tests": ("    os._exit(0)\n", EQUALS, "status 0 before the tests finished"),
    "os._exit(0) from another thread": (
        WRONG + "import threading, time\nthreading.Thread(target=lambda: (time.sleep(0.2), os._exit(0))).start()\n"
        "time.sleep(2)\n", EQUALS, "status 0 before the tests finished"),
    "atexit handler after SystemExit": (
        WRONG + "import atexit\natexit.register(lambda: print('0' * 32))\nraise SystemExit(0)\n", EQUALS,
        "early exit: SystemExit(0)"),
    "a signal to itself": ("    os.kill(os.getpid(), 9)\n", EQUALS, "sandbox: os.kill is not allowed"),
    "a signal handler (sees frames)": ("    import signal\n    return x + 1\n", EQUALS, "importing signal"),
    "fork": ("    os.fork()\n    return x + 1\n", EQUALS, "sandbox: os.fork is not allowed"),
    "subprocess": ("    import subprocess\n    subprocess.run(['true'])\n    return x + 1\n", EQUALS,
                   "PermissionError: sandbox: importing"),
    "_posixsubprocess directly": ("    import _posixsubprocess\n    return x + 1\n", EQUALS,
                                  "importing _posixsubprocess"),
    "posix_spawn": ("    os.posix_spawn('/bin/true', ['true'], {})\n    return x + 1\n", EQUALS, "os.posix_spawn"),
    "exec of another program": ("    os.execv('/bin/true', ['true'])\n", EQUALS, "sandbox: os.exec is not allowed"),
    "network": ("    import socket\n    socket.create_connection(('127.0.0.1', 9), timeout=1)\n    return x + 1\n",
                EQUALS, "sandbox: socket.connect is not allowed"),
    "writing outside": ("    open('/etc/rv-sandbox-was-here', 'w')\n    return x + 1\n", EQUALS, "Error"),
    "deleting outside": ("    os.remove('/etc/hostname')\n    return x + 1\n", EQUALS, "sandbox: os.remove"),
    "memory bomb": ("    data = ' ' * 2**34\n    return x + 1\n", EQUALS, "memory limit exceeded"),
    "endless loop": ("    while True:\n        pass\n", EQUALS, "timed out"),
    "output flood": ("    print('x' * 100_000_000)\n    return x + 1\n", EQUALS, "output limit"),
    "frames through sys._getframe": ("    sys._getframe(3)\n    return x + 1\n", EQUALS,
                                     "sys._getframe is not allowed"),
    "frames through a traceback": (
        "    try:\n        1 / 0\n    except ZeroDivisionError as error:\n        error.__traceback__.tb_frame\n"
        "    return x + 1\n", EQUALS, "frame access (tb_frame)"),
    "frames through a generator": ("    (i for i in ()).gi_frame\n    return x + 1\n", EQUALS,
                                   "frame access (gi_frame)"),
    "the garbage collector's objects": ("    import gc\n    gc.get_objects()\n    return x + 1\n", EQUALS,
                                        "gc.get_objects"),
    "process memory through /proc": ("    open('/proc/self/mem', 'rb')\n    return x + 1\n", EQUALS,
                                     "opening /proc"),
    "ctypes": ("    import ctypes\n    return x + 1\n", EQUALS, "importing ctypes"),
    "tracing the harness": ("    sys.settrace(lambda *args: None)\n    return x + 1\n", EQUALS, "sys.settrace"),
    "shadowing a builtin the tests use": (WRONG + "abs = lambda value: 0\n", ABS,
                                          "harness tampering: the solution redefines builtin `abs`"),
    "patching the builtins module": (WRONG + "import builtins\nbuiltins.abs = lambda value: 0\n", ABS,
                                     "AssertionError"),
    "patching a module the tests use": (WRONG + "import math\nmath.isclose = lambda *a, **k: True\n", ISCLOSE,
                                        "harness tampering: the solution replaced `math.isclose`"),
    "stdout taken away (right answer)": ("    return x + 1\nos.dup2(2, 1)\n", EQUALS,
                                         "status 0 before the tests finished"),
}


@pytest.fixture(autouse=True)
def short_limits(monkeypatch):
    monkeypatch.setattr(humaneval, "LIMITS", Limits(timeout_s=3, cpu_s=3, memory_mb=512))


def run(completion: str, tests: str) -> dict:
    doc = {"prompt": PROMPT, "test": tests, "entry_point": "add_one"}
    [[result]] = humaneval.execute([[completion]], [doc])
    return result


@pytest.mark.parametrize("tests", [EQUALS, ABS, ISCLOSE], ids=["equals", "abs", "isclose"])
def test_the_right_answer_passes_under_every_test_style(tests):
    assert run("    return x + 1\n", tests)["reason"] == "passed"


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_hostile_completion_fails_with_its_reason(name):
    completion, tests, reason = CORPUS[name]
    result = run(completion, tests)
    assert not result["passed"], name
    assert reason in result["reason"], (name, result["reason"])
    assert stray_processes() == []  # the evaluator survives, nothing stray


def test_the_corpus_is_large_and_varied():
    assert len(CORPUS) >= 20 and len({reason for _, _, reason in CORPUS.values()}) >= 20
