"""The program the sandbox runs (`python -I -S -B -c <this file's text>`): it runs a model's
solution and its tests, and says "passed" in a way the solution cannot fake.

Never imported by the evaluator; rv_merge.evaluate.sandbox passes this source as the program.
The parent writes a random nonce, a newline and the JSON spec {solution, tests,
entry_point} into a pipe on stdin. The harness reads it all and closes stdin before any
model code runs, keeps the nonce in a local variable of `main`, and writes it to stdout
only after `check(candidate)` returned.
An early exit of any kind (sys.exit, SystemExit, os._exit, a signal, a crash) therefore
leaves no nonce, and the parent scores the sample as failed.

The solution could still reach the nonce by walking frames up to `main`, reading memory,
or rewriting what the tests call. An audit hook (PEP 578: installed before the solution's
first line, impossible to remove) closes those doors: frame access (sys._getframe raises
ValueError, which the standard library treats as "no caller frame"; traceback, generator
and coroutine frames; other threads' frames; the garbage collector's object lists;
tracing), /proc (memory, file descriptors), ctypes, the low-level process spawner
`_posixsubprocess`, signal handlers (they receive frames), plus signalling, forking,
spawning, network and file deletion. Before the tests run, the harness restores the real
builtins and checks that the solution neither shadows a builtin the tests use nor replaced
a function of a module that was loaded before it ran.
"""

import builtins
import json
import os
import sys

# Loaded before the solution, so that the tampering check covers them: the modules
# HumanEval's prompts, solutions and tests use.
import bisect, collections, functools, hashlib, heapq, itertools, math, random, re, string, typing  # noqa: E401,F401

BLOCKED_EVENTS = frozenset((
    "os.kill", "os.killpg", "os.fork", "os.forkpty", "os.posix_spawn", "os.exec", "os.system",
    "os.spawn", "subprocess.Popen", "pty.spawn", "socket.connect", "socket.bind",
    "socket.sendto", "socket.sendmsg", "os.remove", "os.rmdir", "os.rename", "shutil.rmtree",
    "os.chmod", "os.chown", "os.truncate", "os.symlink", "os.link", "ctypes.dlopen",
    "ctypes.dlsym", "ctypes.cdata", "sys._current_frames", "gc.get_objects", "gc.get_referrers",
    "gc.get_referents", "sys.settrace", "sys.setprofile", "sys._getframe",
))
BLOCKED_MODULES = frozenset(("_posixsubprocess", "ctypes", "_ctypes", "signal", "_signal", "_xxsubinterpreters",
                             "_testcapi", "_testinternalcapi", "faulthandler"))
FRAME_ATTRIBUTES = frozenset(("tb_frame", "gi_frame", "cr_frame", "ag_frame"))
VOLATILE_MODULES = frozenset(("sys", "builtins", "__main__"))


def guard(event, args, _events=BLOCKED_EVENTS, _modules=BLOCKED_MODULES, _frames=FRAME_ATTRIBUTES,
          _fsdecode=os.fsdecode, _str=str, _bytes=bytes, _isinstance=isinstance,
          _permission=PermissionError, _value=ValueError):
    """The audit hook. Its defaults bind everything it uses: the solution cannot rebind them."""
    if event == "sys._getframe":
        raise _value("sandbox: sys._getframe is not allowed")
    if event in _events:
        raise _permission("sandbox: " + event + " is not allowed")
    if event == "import" and args[0] in _modules:
        raise _permission("sandbox: importing " + args[0] + " is not allowed")
    if event == "object.__getattr__" and args[1] in _frames:
        raise _permission("sandbox: frame access (" + args[1] + ") is not allowed")
    if event == "open" and _isinstance(args[0], (_str, _bytes)) and _fsdecode(args[0]).startswith("/proc"):
        raise _permission("sandbox: opening /proc is not allowed")


def names_used(code, _type=type, _code=type(compile("", "", "exec"))):
    """Every global name a compiled program (and the functions in it) refers to."""
    found = set(code.co_names)
    for constant in code.co_consts:
        if _type(constant) is _code:
            found |= names_used(constant)
    return found


def tampering(namespace, test_names, snapshot, _builtins=vars(builtins), _vars=vars, _sorted=sorted):
    """What the solution changed that the tests rely on, or '' if nothing."""
    shadowed = _sorted(name for name in test_names if name in namespace and name in _builtins)
    if shadowed:
        return "the solution redefines builtin `" + shadowed[0] + "`, which the tests use"
    for name, (module, attributes) in snapshot.items():
        if sys.modules.get(name) is not module:
            return "the solution replaced module `" + name + "`"
        current = _vars(module)
        for key, value in attributes.items():
            if callable(value) and current.get(key) is not value:
                return "the solution replaced `" + name + "." + key + "`"
    return ""


def main(_write=os.write, _exit=os._exit, _exec=exec, _type=type, _str=str, _repr=repr, _dict=dict,
         _tampering=tampering, _system_exit=SystemExit, _base=BaseException):
    nonce, _, spec = sys.stdin.buffer.read().partition(b"\n")
    os.close(0)
    spec = json.loads(spec)
    sys.modules.pop("_signal", None)  # loaded at startup: re-importing it now raises an audit event
    solution = compile(spec["solution"], "solution.py", "exec")
    tests = compile(spec["tests"], "tests.py", "exec") if spec["tests"] else None
    test_names = names_used(tests) if tests else set()
    entry_point = spec["entry_point"]
    clean_builtins = _dict(vars(builtins))
    snapshot = {name: (module, _dict(vars(module))) for name, module in list(sys.modules.items())
                if name not in VOLATILE_MODULES and hasattr(module, "__dict__")}
    namespace = {"__name__": "__rv_solution__"}

    def fail(reason):
        _write(2, ("\n" + reason[:300] + "\n").encode("utf-8", "replace"))
        _exit(1)

    sys.addaudithook(guard)
    try:
        _exec(solution, namespace)
        if tests is not None:
            reason = _tampering(namespace, test_names, snapshot)
            if reason:
                fail("harness tampering: " + reason)
            namespace["__builtins__"] = clean_builtins
            _exec(tests, namespace)
            namespace["check"](namespace[entry_point])
    except _system_exit as error:
        fail("early exit: SystemExit(" + _repr(error.code) + ") before the tests finished")
    except _base as error:
        fail(_type(error).__name__ + ": " + _str(error))
    _write(1, b"\n" + nonce + b"\n")
    _exit(0)


if __name__ == "__main__":
    main()
