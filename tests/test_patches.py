"""Third-party internals: each patched or relied-on function is the one the patch was written
for, a library outside the supported range is refused with a clear message, and a broken
rv-merge never breaks mergekit's own methods."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rv_merge.patches import lm_eval as lm_eval_patches
from rv_merge.patches import mergekit as mergekit_patches


@pytest.mark.parametrize("patches", [mergekit_patches, lm_eval_patches], ids=["mergekit", "lm_eval"])
def test_upstream_functions_are_those_the_patches_were_written_for(patches):
    changed = {name: digest for name, digest in patches.upstream_fingerprints().items()
               if patches.UPSTREAM_SOURCES.get(name) != digest}
    assert not changed, (f"upstream changed {sorted(changed)}: re-read the patch in {patches.__name__}, "
                         "adapt it, then update UPSTREAM_SOURCES")
    assert set(patches.UPSTREAM_SOURCES) == set(patches.upstream_fingerprints())


@pytest.mark.parametrize("module, library, message", [
    ("rv_merge.patches.mergekit", "mergekit", "rv-merge patches mergekit >=0.1.5,<0.2, but mergekit 0.2.0"),
    ("rv_merge.patches.lm_eval", "lm_eval", "rv-merge patches lm_eval >=0.4.13,<0.5, but lm_eval 0.2.0 is installed"),
])
def test_a_library_outside_the_supported_range_is_refused_at_import(module, library, message):
    code = ("import importlib.metadata as m; real = m.version\n"
            f"m.version = lambda name: '0.2.0' if name == {library!r} else real(name)\n"
            f"import {module}\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "ImportError" in result.stderr and message in result.stderr


def test_a_broken_rv_merge_leaves_mergekit_working(tmp_path):
    """rv_merge shadowed by a package that fails to import: mergekit's own methods still merge."""
    broken = tmp_path / "rv_merge"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise RuntimeError('simulated broken install')\n")
    code = ("import mergekit.merge\nfrom mergekit import merge_methods\n"
            "print(type(merge_methods.get('task_arithmetic')).__name__)\n"
            "print(hasattr(mergekit.merge.run_merge, 'rv_merge_guarded'))\n"
            "try:\n    merge_methods.get('reasoning_vector')\nexcept Exception:\n    print('missing')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["GeneralizedTaskArithmeticMerge", "False", "missing"]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("rv-merge:")]
    assert warnings == [
        "rv-merge: merge method `reasoning_vector` is unavailable (RuntimeError: simulated broken install); "
        "mergekit's own methods are unaffected. Reinstall rv-merge to fix it."]
