"""Guarded merges read and write tensor by tensor: same files as mergekit's writer would
give, readable by safetensors and transformers, and failures that leave nothing behind."""

from __future__ import annotations

import json
import threading
import weakref

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import rv_merge.merge.streaming_writer as streaming_writer
from rv_merge.merge.aligned_file import AlignedFile
from rv_merge.merge.streaming_writer import StreamingTensorWriter
from rv_merge.merge.tensor_reader import SafetensorsReader
from tests.conftest import load_tensors, mergekit_yaml, recipe_dict, write_recipe

TENSORS = {
    "a": torch.arange(12, dtype=torch.float32).reshape(3, 4),
    "b": torch.tensor([1.5, -2.25, 3.0], dtype=torch.bfloat16),
    "c": torch.tensor([[1, 2], [3, 4]], dtype=torch.int64),
    "empty": torch.empty(0, 5, dtype=torch.float16),
    "scalar": torch.tensor(7.0, dtype=torch.float64),
}


def write_with(tmp_path, max_shard_size: int):
    writer = StreamingTensorWriter(str(tmp_path), max_shard_size=max_shard_size)
    for name, tensor in TENSORS.items():
        writer.save_tensor(name, tensor)
    writer.finalize()
    return writer


def test_one_shard_is_named_like_mergekit_and_reads_back_bit_for_bit(tmp_path):
    write_with(tmp_path, max_shard_size=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    back = load_tensors(tmp_path)
    assert back.keys() == TENSORS.keys()
    for name, tensor in TENSORS.items():
        assert back[name].dtype == tensor.dtype and back[name].shape == tensor.shape
        assert torch.equal(back[name].view(-1).view(torch.uint8), tensor.reshape(-1).view(torch.uint8)), name


def test_shards_split_by_size_with_mergekit_names_and_an_index(tmp_path):
    writer = write_with(tmp_path, max_shard_size=50)  # a: 48 bytes, b: 6, c: 32 ...
    names = sorted(p.name for p in tmp_path.iterdir())
    count = writer.shards_written
    assert count > 1
    assert names == sorted([f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]
                           + ["model.safetensors.index.json"])
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(TENSORS)
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in TENSORS.values())
    for name, file in index["weight_map"].items():
        with safe_open(str(tmp_path / file), "pt") as handle:
            assert torch.equal(handle.get_tensor(name), TENSORS[name])


def test_a_header_larger_than_its_reserve_rewrites_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(streaming_writer, "HEADER_RESERVE", 64)
    write_with(tmp_path, max_shard_size=0)
    back = load_tensors(tmp_path)
    assert all(torch.equal(back[name], tensor) for name, tensor in TENSORS.items())
    assert not list(tmp_path.glob("*.header"))


def test_a_failing_write_is_reported_and_stops_the_writer_thread(tmp_path, monkeypatch):
    def full_disk(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(streaming_writer.os, "pwrite", full_disk)
    writer = StreamingTensorWriter(str(tmp_path))
    with pytest.raises(RuntimeError, match="writing the merged model failed: .*No space left"):
        for name, tensor in TENSORS.items():
            writer.save_tensor(name, tensor)
        writer.finalize()
    writer.abort()
    assert not writer._thread.is_alive()
    assert "rv-merge tensor writer" not in [t.name for t in threading.enumerate()]


def test_a_tensor_larger_than_the_queue_does_not_stop_the_smaller_ones_behind_it(tmp_path, monkeypatch):
    """The largest tensor is not counted against QUEUE_BYTES: while it is being written, up to
    QUEUE_BYTES of smaller tensors are taken at once, and the merge waits only beyond that."""
    monkeypatch.setattr(streaming_writer, "QUEUE_BYTES", 64)
    writing = threading.Event()
    release = threading.Event()
    append = AlignedFile.append

    def held_append(self, *args):
        writing.set()
        release.wait()
        return append(self, *args)

    monkeypatch.setattr(AlignedFile, "append", held_append)
    writer = StreamingTensorWriter(str(tmp_path))
    tensors = {"big": torch.arange(200, dtype=torch.float32)}  # 800 bytes: more than the queue holds
    tensors.update({f"small{i}": torch.full((8,), float(i)) for i in range(3)})  # 32 bytes each

    def saving(name: str) -> threading.Thread:
        thread = threading.Thread(target=writer.save_tensor, args=(name, tensors[name]), daemon=True)
        thread.start()
        return thread

    try:
        writer.save_tensor("big", tensors["big"])
        assert writing.wait(timeout=10)  # the writer holds "big" from here on
        for name in ("small0", "small1"):  # 64 bytes besides "big": taken without waiting
            saved = saving(name)
            saved.join(timeout=10)
            assert not saved.is_alive(), f"{name} waited for the largest tensor to be written"
        waiting = saving("small2")  # 96 bytes besides "big": must wait for the writer
        waiting.join(timeout=0.5)
        assert waiting.is_alive(), "the queue took more than QUEUE_BYTES besides the largest tensor"
    finally:
        release.set()
    waiting.join(timeout=10)
    assert not waiting.is_alive()
    writer.finalize()
    back = load_tensors(tmp_path)
    assert all(torch.equal(back[name], tensor) for name, tensor in tensors.items())


def test_the_reader_gives_the_stored_tensors_and_frees_each_mapping_with_its_tensor(tmp_path):
    save_file({k: v.contiguous() for k, v in TENSORS.items()}, str(tmp_path / "model.safetensors"))
    index = type("Index", (), {"base_path": str(tmp_path), "is_safetensors": True,
                               "tensor_paths": {name: "model.safetensors" for name in TENSORS}})()
    reader = SafetensorsReader(index)
    for name, tensor in TENSORS.items():
        assert torch.equal(reader.get_tensor(name), tensor), name
    assert torch.equal(reader.get_tensor("missing", aliases=["a"]), TENSORS["a"])
    assert reader.get_tensor("missing", raise_on_missing=False) is None
    with pytest.raises(KeyError):
        reader.get_tensor("missing")
    tensor = reader.get_tensor("a")
    mapping = weakref.ref(tensor.untyped_storage())
    view = tensor[1:]
    del tensor
    assert torch.equal(view, TENSORS["a"][1:])  # a view keeps the mapping
    assert mapping() is not None
    del view
    assert mapping() is None
    reader.flush()


def test_a_sharded_merge_equals_the_unsharded_one_and_loads_in_transformers(toy, tmp_path):
    from transformers import AutoModelForCausalLM

    recipe = write_recipe(tmp_path / "r.yml", recipe_dict(toy["target"], toy["sft"], toy["grpo"], alpha=0.7))
    assert mergekit_yaml(recipe, tmp_path / "one").returncode == 0
    result = mergekit_yaml(recipe, tmp_path / "many", "--out-shard-size", "20K")
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "many").glob("model-*-of-*.safetensors"))) > 1
    one, many = load_tensors(tmp_path / "one"), load_tensors(tmp_path / "many")
    assert one.keys() == many.keys()
    assert all(torch.equal(one[k].view(torch.uint8), many[k].view(torch.uint8)) for k in one)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "many", dtype=torch.bfloat16)
    assert torch.equal(model.model.embed_tokens.weight, one["model.embed_tokens.weight"])


def test_during_a_merge_the_executor_finds_its_targets_by_set_and_is_restored_after(tmp_path):
    """The executor's targets answer `in` from a set during a guarded merge (and stay a list
    in mergekit's order); afterwards mergekit's own Executor is back."""
    from mergekit.graph import Executor, Task

    from rv_merge.merge.tensor_reader import reader_for
    from rv_merge.patches import mergekit as mergekit_patches

    class Constant(Task[int]):
        value: int

        def arguments(self):
            return {}

        def execute(self):
            return self.value

    tasks = [Constant(value=i) for i in range(5)]
    with mergekit_patches.streamed_merge_io(StreamingTensorWriter, reader_for):
        executor = Executor(tasks[:3])
        assert isinstance(executor.targets, list) and len(executor.targets) == 3
        assert [handle.task() for handle in executor.targets] == tasks[:3]
        assert all(handle in executor.targets for handle in executor.targets)
        assert [value for _, value in executor.run(quiet=True)] == [0, 1, 2]
    assert type(Executor(tasks).targets) is list
