"""Adversarial perturbations of HumanEval prompts, which are code: renamed variables and
docstring typos, as in ReCode (Wang et al. 2022; the design carried over, not code).

Like the perturbations of rv_merge.evaluate.perturb, which applies them to a dataset
(`perturb_docs`), each takes a document and a seeded generator and returns the new document
and a record of what it changed; the tests that score the completion are left unchanged.
"""

from __future__ import annotations

import ast
import random
import re

NEUTRAL_NAMES = [
    "item", "value", "data", "seq", "elem", "val", "obj", "arr", "num", "text", "entry",
    "token", "part", "piece", "chunk", "unit", "thing", "field", "cell", "node", "bag",
    "pool", "stock", "batch", "group", "slot", "mark", "tally", "measure", "figure",
]


def humaneval_rename(doc: dict, rng: random.Random) -> tuple[dict, dict]:
    """Rename parameters and local variables (in the prompt and the reference solution).

    Only identifiers the AST shows to be function arguments or assigned names are renamed,
    at their exact positions (keyword-argument names, attributes and strings are left
    alone); the entry point keeps its name, so the tests still call it.
    """
    prompt, solution = doc["prompt"], doc["canonical_solution"]
    source = prompt + solution
    tree = ast.parse(source)
    taken = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
        a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)} | {
        f.name for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.ClassDef))}
    targets = sorted({a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)} | {
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
        and not _is_module_level(tree, n)} - {doc["entry_point"], "self"})
    fresh = [n for n in NEUTRAL_NAMES if n not in taken]
    rng.shuffle(fresh)
    mapping = dict(zip(targets, fresh))
    spots = [(n.lineno, n.col_offset, n.id) for n in ast.walk(tree)
             if isinstance(n, ast.Name) and n.id in mapping]
    spots += [(a.lineno, a.col_offset, a.arg) for a in ast.walk(tree)
              if isinstance(a, ast.arg) and a.arg in mapping]
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    edits = sorted(((offsets[line - 1] + _char_col(lines[line - 1], col), old) for line, col, old in spots),
                   reverse=True)
    boundary = len(prompt)
    for position, old in edits:
        source = source[:position] + mapping[old] + source[position + len(old):]
        if position < boundary:
            boundary += len(mapping[old]) - len(old)
    new_prompt, new_solution = source[:boundary], source[boundary:]
    arguments = {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)}
    new_prompt = _rename_in_docstrings(new_prompt, {k: v for k, v in mapping.items() if k in arguments})
    doc["prompt"], doc["canonical_solution"] = new_prompt, new_solution
    return doc, {"renamed": mapping}


def _is_module_level(tree: ast.Module, node: ast.AST) -> bool:
    return any(node is child for stmt in tree.body if not isinstance(stmt, (ast.FunctionDef, ast.ClassDef))
               for child in ast.walk(stmt))


def _char_col(line: str, byte_col: int) -> int:
    """ast columns count UTF-8 bytes; string slicing counts characters."""
    return len(line.encode("utf-8")[:byte_col].decode("utf-8", "replace"))


DOCSTRING = re.compile(r'("""|\'\'\')(.*?)(\1)', flags=re.S)


def _rename_in_docstrings(prompt: str, mapping: dict[str, str]) -> str:
    def fix(match: re.Match) -> str:
        body = match.group(2)
        for old, new in mapping.items():
            body = re.sub(rf"(?<![\w.]){re.escape(old)}(?!\w)", new, body)
        return match.group(1) + body + match.group(3)

    return DOCSTRING.sub(fix, prompt)


def humaneval_typos(doc: dict, rng: random.Random) -> tuple[dict, dict]:
    """Swap two inner letters in about one word in six of the docstring prose.

    Doctest lines (`>>>`) and the lines after them (expected output) are left alone.
    """
    changed = []

    def fix(match: re.Match) -> str:
        lines, in_example = [], False
        for line in match.group(2).split("\n"):
            stripped = line.strip()
            if stripped.startswith(">>>"):
                in_example = True
            elif not stripped:
                in_example = False
            if not in_example:
                line = re.sub(r"\b[A-Za-z]{5,}\b", lambda w: _typo(w.group(0), rng, changed), line)
            lines.append(line)
        return match.group(1) + "\n".join(lines) + match.group(3)

    doc["prompt"] = DOCSTRING.sub(fix, doc["prompt"], count=1)
    return doc, {"typos": changed}


def _typo(word: str, rng: random.Random, changed: list) -> str:
    if rng.random() >= 1 / 6:
        return word
    i = rng.randrange(1, len(word) - 2)
    if word[i] == word[i + 1]:
        return word
    new = word[:i] + word[i + 1] + word[i] + word[i + 2:]
    changed.append([word, new])
    return new
