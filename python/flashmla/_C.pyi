"""Type stubs of the compiled extension (python/src/bindings.cpp). Internal: use `flashmla`."""

from typing import Any, Sequence

FP8_ROW_BYTES: int
BUILT_WITH_CUDA: bool

def _register_torch(tensor_type: type, dtypes: Sequence[tuple[Any, str]]) -> None: ...
def _register_numpy(ndarray_type: type, dtypes: Sequence[tuple[Any, str]]) -> None: ...
def cuda_available() -> bool: ...
def view_info(
    tensor: Any, writable: bool = False
) -> tuple[int, str, list[int], list[int], str]: ...

class Plan:
    def __init__(
        self,
        batch_size: int,
        s_q: int,
        h_q: int,
        h_kv: int,
        page_block_size: int,
        device: str,
        device_index: int,
        head_dim_v: int,
        num_workers: int = 0,
        topk: int = 0,
    ) -> None: ...
    def update(self, cache_seqlens: Any, stream: int = 0) -> None: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def s_q(self) -> int: ...
    @property
    def h_q(self) -> int: ...
    @property
    def h_kv(self) -> int: ...
    @property
    def page_block_size(self) -> int: ...
    @property
    def topk(self) -> int: ...
    @property
    def head_dim_v(self) -> int: ...
    @property
    def device(self) -> str: ...
    @property
    def planned(self) -> bool: ...
    @property
    def num_workers(self) -> int: ...
    @property
    def block_n(self) -> int: ...

def dense_decode(
    plan: Plan,
    q: Any,
    kv_cache: Any,
    block_table: Any,
    cache_seqlens: Any,
    out: Any,
    lse: Any,
    head_dim_v: int,
    softmax_scale: float,
    causal: bool,
    stream: int,
) -> None: ...
def sparse_decode(
    plan: Plan | None,
    q: Any,
    kv_cache: Any,
    indices: Any,
    topk_length: Any,
    attn_sink: Any,
    extra_kv_cache: Any,
    extra_indices: Any,
    extra_topk_length: Any,
    out: Any,
    lse: Any,
    head_dim_v: int,
    softmax_scale: float,
    stream: int,
) -> None: ...
def stream_is_capturing(stream: int) -> bool: ...
def quantize_fp8(src: Any, dst: Any, stream: int) -> None: ...
def dequantize_fp8(src: Any, dst: Any, stream: int) -> None: ...
