"""Other array frameworks: anything with __dlpack__ (read in place through nanobind), jax and
cupy when installed."""

from __future__ import annotations

import numpy as np
import pytest

import flashmla
from reference import assert_close_lse, assert_close_out, dense_case, dense_decode_ref


class DLPackOnly:
    """An array that only speaks DLPack (like a framework flashmla has no fast path for)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.shape = array.shape
        self.dtype = array.dtype

    def __dlpack__(self, **kwargs):
        return self.array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()


def test_generic_dlpack_producer(rng):
    case = dense_case(rng, np.float16, [40, 7], h_q=4)
    q = DLPackOnly(case.q)
    assert flashmla._C.view_info(q)[0] == case.q.__array_interface__["data"][0]  # no copy
    meta, _ = flashmla.get_mla_metadata()
    out, lse = flashmla.flash_mla_with_kvcache(q, DLPackOnly(case.kv_cache),
                                               DLPackOnly(case.block_table),
                                               DLPackOnly(case.cache_seqlens), 512, meta)
    assert isinstance(out, np.ndarray)
    ref_out, ref_lse = dense_decode_ref(case.q, case.kv_cache, case.block_table,
                                        case.cache_seqlens)
    assert_close_out(out, ref_out)
    assert_close_lse(lse, ref_lse)


def test_jax_cpu_arrays(rng, bf16):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    case = dense_case(rng, bf16, [40, 70], h_q=4)
    q, kv, bt, sl = (jnp.asarray(a) for a in (case.q, case.kv_cache, case.block_table,
                                               case.cache_seqlens))
    if hasattr(q, "unsafe_buffer_pointer"):
        assert flashmla._C.view_info(q)[0] == q.unsafe_buffer_pointer()  # read in place
    meta, _ = flashmla.get_mla_metadata()
    out, lse = flashmla.flash_mla_with_kvcache(q, kv, bt, sl, 512, meta)
    assert isinstance(out, jax.Array) and out.dtype == jnp.bfloat16
    ref_out, ref_lse = dense_decode_ref(case.q, case.kv_cache, case.block_table,
                                        case.cache_seqlens)
    assert_close_out(np.asarray(out), ref_out)
    assert_close_lse(np.asarray(lse), ref_lse)


def test_cupy_arrays(rng):
    cupy = pytest.importorskip("cupy")
    if not flashmla.cuda_available():
        pytest.skip("flashmla has no usable CUDA backend here")
    case = dense_case(rng, np.float16, [300, 17], h_q=16)
    q, kv, bt, sl = (cupy.asarray(a) for a in (case.q, case.kv_cache, case.block_table,
                                                case.cache_seqlens))
    meta, _ = flashmla.get_mla_metadata()
    out, lse = flashmla.flash_mla_with_kvcache(q, kv, bt, sl, 512, meta)
    assert isinstance(out, cupy.ndarray) and out.device.id == q.device.id
    ref_out, ref_lse = dense_decode_ref(case.q, case.kv_cache, case.block_table,
                                        case.cache_seqlens)
    assert_close_out(cupy.asnumpy(out), ref_out)
    assert_close_lse(cupy.asnumpy(lse), ref_lse)
