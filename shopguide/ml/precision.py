"""Which number format the transformers compute in. No torch import here: the Django
system checks read ``PRECISIONS`` without loading it."""

from functools import cache
from pathlib import Path

PRECISIONS = ("auto", "bfloat16", "float32")


@cache
def cpu_flags():
    """The CPU's feature flags as Linux reports them (empty elsewhere); read once."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


def fast_bfloat16():
    """Whether the CPU multiplies bfloat16 natively (AVX512-BF16 or AMX). Elsewhere torch
    emulates it, which is slower than float32."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def use_bfloat16(precision):
    """``precision``: "bfloat16", "float32", or "auto" (bfloat16 where the CPU is fast at it).

    Matrix products in bfloat16 (weights, sums and outputs stay float32) make encoding and
    fine-tuning 2-3x faster on such CPUs; vectors agree with float32 ones to a cosine of
    0.9999 or more (all-MiniLM-L6-v2, Home Depot titles)."""
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}.")
    return precision == "bfloat16" or (precision == "auto" and fast_bfloat16())


def set_torch_threads(threads):
    """torch's intra-op threads (None: torch's default). Imports torch only when asked."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def limit_blas_threads(threads):
    """Run numpy's matrix products (OpenBLAS or MKL) on ``threads`` threads in this process,
    from now on. Processes that serve need it: after each product OpenBLAS's idle threads
    spin for about 100 ms, taking a core from the requests that follow (on 2 cores, one
    uncached answer a process served alone took 18 ms; served in turns with another process,
    32 ms, and 18 ms again with one BLAS thread). One thread multiplies the search memory's
    8,000 x 384 matrix in 0.19 ms instead of 0.10."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(int(threads), user_api="blas")
