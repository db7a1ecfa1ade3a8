"""The merge arithmetic compiled for the CPU: one pass over the tensors, one rounding.

torch computes `target + c * (plus - minus)` in float64 as about ten passes over each block
(three conversions, the arithmetic, and a correct rounding built from several operations),
which on CPU costs more than reading and writing the tensors. Here the same float64
operations in the same order, followed by one correct rounding written without branches on
the values, are one loop in LLVM IR (built with llvmlite), compiled for the host CPU the first
time a process merges a combination of dtypes (about 30 ms). LLVM vectorises the loop; the IR
carries no fast-math flags, so it may not fuse, reorder or approximate any floating-point
operation, and every element gets the bits of the scalar loop (tests/test_numerics.py checks
them against the torch path and independent references; bench/bench_merge.py measures the
speed). Large tensors are cut into parts merged on every usable core at once (ctypes releases
the GIL during each call); each element is computed alone, so the parts give the same bits.

Supported: output bfloat16 or float32; inputs bfloat16, float32 or float64 (stored vectors).
`merge_into` returns None for anything else, and the caller uses the torch path.
"""

from __future__ import annotations

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

import llvmlite.binding as llvm
import torch
from llvmlite import ir

I16, I32, I64 = ir.IntType(16), ir.IntType(32), ir.IntType(64)
F32, F64 = ir.FloatType(), ir.DoubleType()
# The IR type of an element of each dtype (bfloat16 is handled as its 16-bit pattern).
INPUT_TYPES = {torch.bfloat16: I16, torch.float32: F32, torch.float64: F64}
OUTPUT_TYPES = {torch.bfloat16: I16, torch.float32: F32}
# Tensors with fewer elements run in one piece (a part costs ~10 us to hand out); larger ones in
# parts of at least this many elements, four per core so that a core slowed by other work
# (the output writer, page faults on the inputs) does not hold the others up.
PART_ELEMENTS = 1 << 20
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
_WORKERS = ThreadPoolExecutor(max_workers=CORES, thread_name_prefix="rv-merge kernel") if CORES > 1 else None


def merge_into(out: torch.Tensor, target: torch.Tensor, coefficient: float, plus: torch.Tensor,
               minus: Optional[torch.Tensor]) -> Optional[bool]:
    """out = target + coefficient * (plus - minus), rounded once; returns whether every result
    is finite, or None if the dtypes, device or layout are not supported here (nothing is
    written then). `minus` may be None."""
    inputs = [target, plus] + ([] if minus is None else [minus])
    if out.device.type != "cpu" or out.dtype not in OUTPUT_TYPES or not out.is_contiguous() or \
            any(t.dtype not in INPUT_TYPES or t.device.type != "cpu" or t.shape != out.shape for t in inputs):
        return None
    inputs = [t.contiguous() for t in inputs]  # a no-op for mapped or freshly merged tensors
    kernel = _compiled_kernel(out.dtype, *(t.dtype for t in inputs))
    tensors = [out, *inputs]

    def merge_part(start: int, count: int) -> int:
        pointers = [t.data_ptr() + start * t.element_size() for t in tensors]
        return kernel(*pointers, count, float(coefficient))

    size = out.numel()
    part = max(PART_ELEMENTS, -(-size // (4 * CORES)))
    if _WORKERS is None or size < 2 * PART_ELEMENTS:
        return merge_part(0, size) == 0
    parts = [_WORKERS.submit(merge_part, start, min(part, size - start)) for start in range(0, size, part)]
    return not any([p.result() for p in parts])


# ------------------------------------------------------------------ compiling the loop

_COMPILED: dict[tuple[torch.dtype, ...], tuple[object, Callable]] = {}  # dtypes -> (engine, function)
_COMPILE_LOCK = threading.Lock()


def _compiled_kernel(*dtypes: torch.dtype) -> Callable:
    """The loop for (out, target, plus[, minus]) dtypes, as a C function:
    int32 merge(out*, target*, plus*, [minus*,] int64 count, double coefficient), which returns
    nonzero if any result is NaN or infinite. Compiled once per process and combination."""
    with _COMPILE_LOCK:
        if dtypes not in _COMPILED:
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            machine = _host_machine()
            module = llvm.parse_assembly(str(_loop_ir(*dtypes)))
            module.verify()
            tuning = llvm.create_pipeline_tuning_options(3)  # speed level; its keyword was renamed across versions
            tuning.loop_vectorization = tuning.slp_vectorization = True
            passes = llvm.create_pass_builder(machine, tuning)
            passes.getModulePassManager().run(module, passes)
            engine = llvm.create_mcjit_compiler(module, machine)
            engine.finalize_object()
            signature = ctypes.CFUNCTYPE(ctypes.c_int32, *[ctypes.c_void_p] * len(dtypes),
                                         ctypes.c_int64, ctypes.c_double)
            _COMPILED[dtypes] = (engine, signature(engine.get_function_address("merge")))
        return _COMPILED[dtypes][1]


def _host_machine():
    """A target machine for this CPU and its features (AVX-512, NEON, ...). A new one for each
    compile: the execution engine made from it takes ownership of it."""
    target = llvm.Target.from_default_triple()
    try:
        features = llvm.get_host_cpu_features().flatten()
    except RuntimeError:  # not known on every platform; LLVM then assumes the baseline
        features = ""
    return target.create_target_machine(cpu=llvm.get_host_cpu_name(), features=features, opt=3)


def _loop_ir(out_dtype: torch.dtype, target_dtype: torch.dtype, plus_dtype: torch.dtype,
             minus_dtype: Optional[torch.dtype] = None) -> ir.Module:
    """for i < count: x = widen(plus[i]) [- widen(minus[i])]; x *= c; x += widen(target[i]);
    out[i] = narrow(x); flag |= non_finite(out[i])."""
    module = ir.Module(name="rv_merge_kernel")
    element_types = [OUTPUT_TYPES[out_dtype]] + [INPUT_TYPES[d] for d in (target_dtype, plus_dtype, minus_dtype) if d]
    function = ir.Function(module, ir.FunctionType(I32, [t.as_pointer() for t in element_types] + [I64, F64]),
                           name="merge")
    out, target, plus = function.args[:3]
    minus = function.args[3] if minus_dtype else None
    count, coefficient = function.args[-2:]
    entry, loop, done = (function.append_basic_block(name) for name in ("entry", "loop", "done"))

    builder = ir.IRBuilder(entry)
    builder.cbranch(builder.icmp_signed(">", count, I64(0)), loop, done)

    builder.position_at_end(loop)
    index, flags = builder.phi(I64), builder.phi(I16)

    def element(pointer, dtype):
        return _widen(builder, builder.load(builder.gep(pointer, [index])), dtype)

    x = element(plus, plus_dtype)
    if minus is not None:
        x = builder.fsub(x, element(minus, minus_dtype))
    x = builder.fmul(x, coefficient)  # exact when the coefficient is 1
    x = builder.fadd(x, element(target, target_dtype))
    value, non_finite = _narrow(builder, x, out_dtype)
    builder.store(value, builder.gep(out, [index]))
    next_flags = builder.or_(flags, non_finite)
    next_index = builder.add(index, I64(1))
    index.add_incoming(I64(0), entry)
    index.add_incoming(next_index, loop)
    flags.add_incoming(I16(0), entry)
    flags.add_incoming(next_flags, loop)
    builder.cbranch(builder.icmp_signed("<", next_index, count), loop, done)

    builder.position_at_end(done)
    result = builder.phi(I16)
    result.add_incoming(I16(0), entry)
    result.add_incoming(next_flags, loop)
    builder.ret(builder.zext(result, I32))
    return module


def _widen(builder: ir.IRBuilder, value, dtype: torch.dtype):
    """Input element -> float64 (exact for every supported input)."""
    if dtype == torch.bfloat16:  # bfloat16 bits: the top half of a float32
        value = builder.bitcast(builder.shl(builder.zext(value, I32), I32(16)), F32)
    return value if dtype == torch.float64 else builder.fpext(value, F64)


def _narrow(builder: ir.IRBuilder, x, dtype: torch.dtype):
    """float64 -> (output element, 16-bit flag that is nonzero if it is NaN or infinite)."""
    if dtype == torch.float32:
        single = builder.fptrunc(x, F32)  # a single correct rounding
        magnitude = builder.call(builder.module.declare_intrinsic("llvm.fabs", [F32]), [single])
        return single, builder.zext(builder.fcmp_unordered("==", magnitude, F32(float("inf"))), I16)
    bits = _bfloat16_bits(builder, x)
    # exponent all ones (NaN or infinity) carries into bit 15
    flag = builder.and_(builder.add(builder.and_(bits, I16(0x7F80)), I16(0x80)), I16(0x8000))
    return bits, flag


def _bfloat16_bits(builder: ir.IRBuilder, x):
    """The bfloat16 nearest to float64 `x` (ties to even), as bits.

    Rounding to float32 first and then to bfloat16 would round twice, which is wrong when the
    first rounding lands on a bfloat16 tie. Rounded "to odd" instead (toward zero, then the last
    bit set if anything was dropped), the float32 keeps that information and the second
    rounding is correct: float32 has more than two bits beyond bfloat16's at every exponent,
    subnormals included. Overflow gives infinity, NaN stays NaN.
    """
    absolute = builder.module.declare_intrinsic("llvm.fabs", [F64])
    single = builder.fptrunc(x, F32)
    back = builder.fpext(single, F64)
    bits = builder.bitcast(single, I32)
    away_from_zero = builder.fcmp_ordered(">", builder.call(absolute, [back]), builder.call(absolute, [x]))
    bits = builder.sub(bits, builder.zext(away_from_zero, I32))  # step back toward zero
    bits = builder.or_(bits, builder.zext(builder.fcmp_unordered("!=", back, x), I32))  # inexact: sticky bit
    # any NaN: a quiet one (no payload carries out)
    bits = builder.select(builder.fcmp_unordered("!=", x, x), I32(0x7FC00000), bits)
    lowest_kept = builder.and_(builder.lshr(bits, I32(16)), I32(1))
    bits = builder.add(bits, builder.add(I32(0x7FFF), lowest_kept))  # to nearest, ties to even
    return builder.trunc(builder.lshr(bits, I32(16)), I16)
