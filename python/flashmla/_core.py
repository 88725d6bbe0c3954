"""Shared machinery of the public APIs: owners of plans (for the torch op), a pool of plans
for FlashMLA's per-step metadata objects, device parsing and error renaming."""

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
