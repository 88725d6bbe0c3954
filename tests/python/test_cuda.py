"""CUDA with torch: correctness against the CPU path, streams, CUDA graphs, torch.compile and
host overhead. Skips without torch, without a GPU, or with a build that has no CUDA backend."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import flashmla  # noqa: E402
from reference import (assert_close_lse, assert_close_out, dense_case,  # noqa: E402
                       dense_decode_ref)

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU"),
    pytest.mark.skipif(not flashmla.cuda_available(), reason="flashmla built without CUDA"),
]


def case_tensors(rng, seqlens, device, dtype=torch.bfloat16, **kwargs):
    kwargs.setdefault("page", 64)  # MLADecoder's default page_block_size
    case = dense_case(rng, np.float32, seqlens, **kwargs)
    q = torch.from_numpy(case.q).to(dtype)
    kv = torch.from_numpy(case.kv_cache).to(dtype)
    bt = torch.from_numpy(case.block_table)
    sl = torch.from_numpy(case.cache_seqlens)
    return [t.to(device) for t in (q, kv, bt, sl)]


def ref(q, kv, bt, sl, **kwargs):
    return dense_decode_ref(q.double().cpu().numpy(), kv.double().cpu().numpy(),
                            bt.cpu().numpy(), sl.cpu().numpy(), **kwargs)


def check(out, lse, want):
    assert_close_out(out.double().cpu().numpy(), want[0])
    assert_close_lse(lse.double().cpu().numpy(), want[1])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("seqlens,s_q,h_q,page,causal", [
    ([1000, 1, 0, 4097], 1, 16, 64, False),
    ([300, 64], 2, 128, 64, True),
    ([77, 129, 200], 4, 16, 32, True),
])
def test_cuda_matches_cpu_and_reference(rng, dtype, seqlens, s_q, h_q, page, causal):
    tensors = case_tensors(rng, seqlens, "cpu", dtype, s_q=s_q, h_q=h_q, page=page)
    meta_cpu, _ = flashmla.get_mla_metadata()
    out_cpu, lse_cpu = flashmla.flash_mla_with_kvcache(*tensors[:4], 512, meta_cpu,
                                                       causal=causal)
    cuda = [t.cuda() for t in tensors]
    meta, _ = flashmla.get_mla_metadata()
    out, lse = flashmla.flash_mla_with_kvcache(*cuda, 512, meta, causal=causal)
    assert out.is_cuda and lse.is_cuda and out.dtype == dtype
    want = ref(*tensors, causal=causal)
    check(out, lse, want)
    torch.testing.assert_close(out.cpu().float(), out_cpu.float(), atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(lse.cpu(), lse_cpu, atol=1e-4, rtol=1e-4)


def test_fp8_cache_cuda_matches_cpu(rng):
    q, kv, bt, sl = case_tensors(rng, [500, 64], "cpu", h_q=16, page=64)
    cache_cpu = flashmla.quantize_kv_cache_fp8(kv)
    cache = flashmla.quantize_kv_cache_fp8(kv.cuda())
    assert cache.is_cuda
    assert torch.equal(cache.view(torch.uint8).cpu(), cache_cpu.view(torch.uint8))
    try:
        meta, _ = flashmla.get_mla_metadata()
        out, lse = flashmla.flash_mla_with_kvcache(q.cuda(), cache, bt.cuda(), sl.cuda(), 512,
                                                   meta, is_fp8_kvcache=True)
    except NotImplementedError:
        pytest.skip("the CUDA backend has no FP8-cache decode yet")
    meta_cpu, _ = flashmla.get_mla_metadata()
    out_cpu, lse_cpu = flashmla.flash_mla_with_kvcache(q, cache_cpu, bt, sl, 512, meta_cpu,
                                                       is_fp8_kvcache=True)
    torch.testing.assert_close(out.cpu().float(), out_cpu.float(), atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(lse.cpu(), lse_cpu, atol=1e-4, rtol=1e-4)


def test_runs_on_current_stream(rng):
    q, kv, bt, sl = case_tensors(rng, [2000, 3000], "cuda", h_q=16)
    decoder = flashmla.MLADecoder(2, 16, device="cuda").plan(sl)
    q_late = torch.zeros_like(q)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(100_000_000)  # keeps `side` busy: q_late is written late
        q_late.copy_(q)
        out, lse = decoder(q_late, kv, bt, sl)
    side.synchronize()
    check(out, lse, ref(q, kv, bt, sl))


def test_explicit_stream_argument(rng):
    q, kv, bt, sl = case_tensors(rng, [100, 300], "cuda", h_q=16)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    decoder = flashmla.MLADecoder(2, 16, device="cuda").plan(sl, stream=side)
    out = torch.empty(2, 1, 16, 512, dtype=q.dtype, device="cuda")
    lse = torch.empty(2, 16, 1, device="cuda")
    decoder(q, kv, bt, sl, out=out, lse=lse, stream=side)
    side.synchronize()
    check(out, lse, ref(q, kv, bt, sl))


def test_cuda_graph_capture_and_replay_decoder(rng):
    layers = 3
    q, kv, bt, sl = case_tensors(rng, [300, 1000, 17], "cuda", h_q=16)
    # Same distribution as case_tensors (N(0,1)/10 clamped), which the tolerances are made for.
    kvs = [(torch.randn_like(kv) / 10).clamp(-1, 1) for _ in range(layers)]
    decoder = flashmla.MLADecoder(3, 16, device="cuda").plan(sl)  # planned before capture
    outs = [torch.empty(3, 1, 16, 512, dtype=q.dtype, device="cuda") for _ in range(layers)]
    lses = [torch.empty(3, 16, 1, device="cuda") for _ in range(layers)]
    graph = torch.cuda.CUDAGraph()
    decoder(q, kvs[0], bt, sl, out=outs[0], lse=lses[0])  # warm-up
    torch.cuda.synchronize()
    with torch.cuda.graph(graph):
        for i in range(layers):
            decoder(q, kvs[i], bt, sl, out=outs[i], lse=lses[i])
    for _ in range(2):
        q.copy_((torch.randn_like(q) / 10).clamp(-1, 1))
        graph.replay()
        torch.cuda.synchronize()
        for i in range(layers):
            check(outs[i], lses[i], ref(q, kvs[i], bt, sl))


def test_cuda_graph_with_flashmla_metadata_planned_inside(rng):
    """FlashMLA's usage: get_mla_metadata() inside the captured step. The planning kernel is
    captured too, so replays re-plan from the current cache_seqlens."""
    q, kv, _, sl = case_tensors(rng, [64, 64], "cuda", h_q=16, spare_pages=40)
    bt = (torch.arange(2 * 12, dtype=torch.int32, device="cuda").view(2, 12) * 7) % kv.shape[0]
    static = {}
    graph = torch.cuda.CUDAGraph()

    def step():
        meta, _ = flashmla.get_mla_metadata()
        static["out"], static["lse"] = flashmla.flash_mla_with_kvcache(q, kv, bt, sl, 512, meta)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()  # warm-up
    torch.cuda.current_stream().wait_stream(side)
    with torch.cuda.graph(graph):
        step()
    for new_lens in ([64, 64], [1, 640], [700, 0]):
        sl.copy_(torch.tensor(new_lens, dtype=torch.int32))
        bt.copy_(torch.randperm(kv.shape[0], device="cuda")[:bt.numel()].view_as(bt).int())
        graph.replay()
        torch.cuda.synchronize()
        check(static["out"], static["lse"], ref(q, kv, bt, sl))


def test_torch_compile_inductor(rng):
    q, kv, bt, sl = case_tensors(rng, [100, 2000], "cuda", h_q=16)
    decoder = flashmla.MLADecoder(2, 16, device="cuda").plan(sl)

    def attention(x, kv, bt, sl):
        out, lse = decoder(x * 0.5, kv, bt, sl)
        return out.float().relu(), lse

    torch._dynamo.reset()
    compiled = torch.compile(attention, fullgraph=True)
    got = compiled(q, kv, bt, sl)
    want = attention(q, kv, bt, sl)
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])


def test_host_overhead_below_10us():
    import bench_overhead

    result = bench_overhead.measure_cuda(iters=2000)
    print(result)
    assert result["decoder_prealloc_overhead_us"] < 10.0, result
