"""Shared machinery of the public APIs: owners of plans (for the torch ops), a pool of dense
plans for FlashMLA's per-step metadata objects, a cache of sparse plans, device parsing and
error renaming."""

from __future__ import annotations

import itertools
import threading
import weakref
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Mapping, Tuple, TypeVar

from ._backend import _C, torch_module
from ._interop import DeviceTuple

# ---- torch.compile -----------------------------------------------------------------------

if torch_module is not None and hasattr(torch_module, "compiler") and hasattr(
        torch_module.compiler, "is_compiling"):
    compiling: Callable[[], bool] = torch_module.compiler.is_compiling
else:  # pragma: no cover - without torch nothing is ever compiled

    def compiling() -> bool:
        return False


def capturing(device: DeviceTuple) -> bool:
    """True while torch is capturing a CUDA graph on the current stream of `device`."""
    torch = torch_module
    if torch is None or device[0] != "cuda":
        return False
    with torch.cuda.device(device[1]):
        return bool(torch.cuda.is_current_stream_capturing())


# ---- Objects the torch op refers to by id -------------------------------------------------

_owner_ids = itertools.count(1)
_owners: "weakref.WeakValueDictionary[int, Any]" = weakref.WeakValueDictionary()


def register_owner(owner: Any) -> int:
    """An id by which the torch custom op finds `owner` (held weakly)."""
    owner_id = next(_owner_ids)
    _owners[owner_id] = owner
    return owner_id


def owner(owner_id: int) -> Any:
    try:
        return _owners[owner_id]
    except KeyError:
        raise ValueError(
            f"tile_scheduler_metadata: the scheduling object (id {owner_id}) no longer exists"
        ) from None


# ---- Plans --------------------------------------------------------------------------------

PlanKey = Tuple[int, int, int, int, int, int, str, int]  # b, s_q, h_q, h_kv, page, dv, device


def new_plan(key: PlanKey, num_workers: int = 0) -> Any:
    b, s_q, h_q, h_kv, page_block_size, head_dim_v, dev_type, dev_index = key
    return _C.Plan(b, s_q, h_q, h_kv, page_block_size, dev_type, dev_index, head_dim_v,
                   num_workers)


class PlanPool:
    """Plans of dropped FlashMLA metadata objects, kept for the next object of the same shape.

    FlashMLA's API makes a new metadata object every decoding step; making a new plan each time
    would allocate (and on CUDA, free with a device synchronization) every step. Plans that were
    first used while a CUDA graph was being captured are never pooled nor freed: the graph keeps
    using their buffers.
    """

    def __init__(self, max_plans: int = 16) -> None:
        self._free: "OrderedDict[PlanKey, List[Any]]" = OrderedDict()
        self._count = 0
        self._max = max_plans
        self._lock = threading.Lock()
        self.captured: List[Any] = []

    def acquire(self, key: PlanKey) -> Any:
        with self._lock:
            plans = self._free.get(key)
            if plans:
                self._count -= 1
                plan = plans.pop()
                if not plans:
                    del self._free[key]
                return plan
        return new_plan(key)

    def release(self, key: PlanKey, plan: Any) -> None:
        with self._lock:
            self._free.setdefault(key, []).append(plan)
            self._free.move_to_end(key)
            self._count += 1
            while self._count > self._max:
                oldest = next(iter(self._free))
                self._free[oldest].pop(0)
                self._count -= 1
                if not self._free[oldest]:
                    del self._free[oldest]

    def clear(self) -> None:
        with self._lock:
            self._free.clear()
            self._count = 0


plan_pool = PlanPool()


# Token-sparse plans: b, s_q, h_q, slots (topk + extra_topk), head_dim_v, device type, index.
SparseKey = Tuple[int, int, int, int, int, str, int]


def new_sparse_plan(key: SparseKey, num_workers: int = 0) -> Any:
    """A sparse DecodePlan (planned when made: on CUDA this allocates and copies to the GPU)."""
    b, s_q, h_q, slots, head_dim_v, dev_type, dev_index = key
    return _C.Plan(b, s_q, h_q, 1, 64, dev_type, dev_index, head_dim_v, num_workers, slots)


class SparsePlanCache:
    """One sparse plan per (shape, device, stream), for the plan-less sparse APIs.

    A sparse plan's schedule depends on the shape alone, so unlike a dense plan it can be
    reused by every call of that shape; only its split workspace must not be shared by calls
    that may overlap, hence one plan per stream (calls on one stream run in order). The first
    call of a shape on a stream makes the plan (on CUDA: device allocation and a copy, which
    is why a warm-up call should come before CUDA-graph capture); later calls only look it up.

    A plan used while its stream is capturing a CUDA graph is pinned: kept for the life of
    the process, since the graph keeps using its buffers. Other plans are evicted least
    recently used first beyond `max_plans` (never while the stream is capturing).
    """

    def __init__(self, max_plans: int = 16) -> None:
        self._plans: "OrderedDict[Tuple[Any, ...], Any]" = OrderedDict()
        self._pinned: Dict[Tuple[Any, ...], Any] = {}
        self._max = max_plans
        self._lock = threading.Lock()

    def get(self, key: SparseKey, stream: int) -> Any:
        """The plan for `key` on `stream` (a raw cudaStream_t; 0 on the CPU), made if needed."""
        full = (*key, stream)
        plan = self._pinned.get(full)
        if plan is not None:
            return plan
        capturing = key[5] == "cuda" and bool(_C.stream_is_capturing(stream))
        with self._lock:
            plan = self._plans.get(full)
            if plan is None:
                plan = new_sparse_plan(key)
                self._plans[full] = plan
            else:
                self._plans.move_to_end(full)
            if capturing:
                self._pinned[full] = self._plans.pop(full)
            else:
                while len(self._plans) > self._max:
                    self._plans.popitem(last=False)  # freed when no caller holds it
        return plan

    def __len__(self) -> int:
        with self._lock:
            return len(self._plans) + len(self._pinned)

    def clear(self) -> None:
        """Drops the unpinned plans (pinned ones stay: CUDA graphs may use them)."""
        with self._lock:
            self._plans.clear()


sparse_plans = SparsePlanCache()


def parse_device(device: Any) -> DeviceTuple:
    """("cpu", 0) or ("cuda", index) from "cpu", "cuda", "cuda:1", a torch.device or an int."""
    if isinstance(device, int) and not isinstance(device, bool):
        return ("cuda", device)
    text = str(device)
    if text == "cpu":
        return ("cpu", 0)
    if text == "cuda":
        torch = torch_module
        if torch is not None and torch.cuda.is_available():
            return ("cuda", int(torch.cuda.current_device()))
        return ("cuda", 0)
    if text.startswith("cuda:") and text[5:].isdigit():
        return ("cuda", int(text[5:]))
    raise ValueError(f"device: expected 'cpu', 'cuda', 'cuda:N' or a torch.device, got {device!r}")


def device_str(device: DeviceTuple) -> str:
    """The inverse of parse_device: "cpu" or "cuda:N"."""
    return "cpu" if device[0] == "cpu" else f"cuda:{device[1]}"


# ---- Errors -------------------------------------------------------------------------------

E = TypeVar("E", bound=BaseException)


def renamed(error: E, names: Mapping[str, str]) -> E:
    """`error` with its leading argument name ("kv_cache: ...") replaced per `names`."""
    message = str(error)
    head, sep, rest = message.partition(": ")
    if sep and head in names:
        return type(error)(f"{names[head]}: {rest}")
    return error


RENAME_NONE: Dict[str, str] = {}
