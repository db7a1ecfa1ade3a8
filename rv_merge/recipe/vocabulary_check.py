"""The tokenizer check: every model of a merge maps each token to the same id as the target.

Merging rows of embeddings is only meaningful when row i is the same token in every model.
The check loads each tokenizer with transformers and compares the token-to-id maps. Loading
is the slow part (one of Qwen2.5's size, 151,665 tokens, took about a second on the machine of
BENCHMARKS.md: bench/bench_tokenizer_check.py), and a pair and its target often carry the
very same tokenizer files, so a model whose tokenizer files are byte for byte those of a
model loaded before it reuses that model's map. One load always stays: it shows that the
target's tokenizer, which the merged model gets, loads at all.
"""

from __future__ import annotations

from pathlib import Path

from rv_merge.errors import CompatibilityError, describe_error

# Files that can define the vocabulary (one of them must exist) ...
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")
# ... and every file transformers reads to build a tokenizer, compared byte for byte.
TOKENIZER_DEFINITION = TOKENIZER_FILES + ("merges.txt", "tokenizer_config.json", "special_tokens_map.json",
                                          "added_tokens.json")


def check_tokenizers(folders: dict[str, Path], source: str, align_vocabularies: bool) -> str:
    """Refuse models whose token ids differ from the target's unless rows are aligned by token
    string; the line `rv check` prints. `folders`: each model's folder by its label in
    messages, the target first."""
    labels = list(folders)
    vocabularies = _load_vocabularies(folders, source)
    target = vocabularies[0]
    for label, vocabulary in zip(labels[1:], vocabularies[1:]):
        if align_vocabularies or vocabulary == target:  # == is quick; the list below is not
            continue
        differing = [t for t in set(target) | set(vocabulary) if target.get(t) != vocabulary.get(t)]
        token = sorted(differing)[0]
        raise CompatibilityError(
            f"{source}: tokenizers differ: token {token!r} is id {target.get(token)} in "
            f"{labels[0]} but {vocabulary.get(token)} in {label} "
            f"({len(differing)} tokens differ); use a pair built on the target's tokenizer, or "
            "add `tokenizer_source: base` to align embedding rows by token string"
        )
    if align_vocabularies:
        return "ok   tokenizers load (token-to-id mappings may differ: aligned by token string)"
    return f"ok   tokenizers load and map all {len(target)} tokens to the same ids"


def _load_vocabularies(folders: dict[str, Path], source: str) -> list[dict[str, int]]:
    """Each model's token-to-id map, loading each distinct set of tokenizer files once."""
    loaded: list[tuple[dict[str, bytes], dict[str, int]]] = []
    vocabularies = []
    for label, folder in folders.items():
        files = {name: (folder / name).read_bytes() for name in TOKENIZER_DEFINITION if (folder / name).is_file()}
        vocabulary = next((known for known_files, known in loaded if known_files == files), None)
        if vocabulary is None:
            vocabulary = _load_vocabulary(label, folder, source)
            loaded.append((files, vocabulary))
        vocabularies.append(vocabulary)
    return vocabularies


def _load_vocabulary(label: str, folder: Path, source: str) -> dict[str, int]:
    from transformers import AutoTokenizer

    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise CompatibilityError(
            f"{source}: {label}: cannot load its tokenizer (no {', '.join(TOKENIZER_FILES)}); "
            "copy the tokenizer files (tokenizer.json, tokenizer_config.json) into the folder"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        return tokenizer.get_vocab()
    except Exception as error:
        raise CompatibilityError(
            f"{source}: {label}: cannot load its tokenizer ({describe_error(error)}); "
            "copy the tokenizer files (tokenizer.json, tokenizer_config.json) into the folder"
        ) from None
