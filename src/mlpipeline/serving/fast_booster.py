"""One-row predictions through LightGBM's own single-row fast path.

``Booster.predict`` sets up a predictor for every call (parameter parsing, a thread pool
region, array checks), which dominates the cost of predicting one row. LightGBM's C API
offers ``LGBM_BoosterPredictForMatSingleRowFast`` for exactly this case: the set-up is
done once (``…FastInit``) and each call only walks the trees. This module calls it
through the ctypes handle that the ``lightgbm`` package itself uses, with buffers
allocated once per thread, so a single-row prediction costs a few microseconds of
overhead. The result is the same number ``Booster.predict`` returns (tested to 1e-12).

A fast configuration is not shared between threads: each thread gets its own, created on
first use and freed with the booster.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["SingleRowPredictor"]

_PREDICT_NORMAL = 0
_DTYPE_FLOAT64 = 1


class _ThreadState:
    def __init__(self, handle: ctypes.c_void_p, ncol: int) -> None:
        self.handle = handle
        self.out = np.zeros(1, dtype=np.float64)
        self.out_ptr = self.out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self.out_len = ctypes.c_int64(0)
        self.out_len_ref = ctypes.byref(self.out_len)


class SingleRowPredictor:
    """``predict(row)`` for a one-row float64 matrix of a LightGBM regression booster."""

    def __init__(self, booster: Any) -> None:
        from lightgbm import basic

        self._booster = booster  # keeps the booster (and its handle) alive
        self._lib = basic._LIB  # type: ignore[attr-defined]
        self._safe_call = basic._safe_call
        self.ncol = int(booster.num_feature())
        self._local = threading.local()
        self._handles: list[ctypes.c_void_p] = []
        self._lock = threading.Lock()
        weakref.finalize(self, _free_all, self._lib, self._handles)

    def _state(self) -> _ThreadState:
        state: _ThreadState | None = getattr(self._local, "state", None)
        if state is None:
            handle = ctypes.c_void_p()
            self._safe_call(
                self._lib.LGBM_BoosterPredictForMatSingleRowFastInit(
                    self._booster._handle,
                    ctypes.c_int(_PREDICT_NORMAL),
                    ctypes.c_int(0),  # start iteration
                    ctypes.c_int(-1),  # all iterations, as Booster.predict does for a loaded model
                    ctypes.c_int(_DTYPE_FLOAT64),
                    ctypes.c_int32(self.ncol),
                    ctypes.c_char_p(b""),
                    ctypes.byref(handle),
                )
            )
            with self._lock:
                self._handles.append(handle)
            state = _ThreadState(handle, self.ncol)
            self._local.state = state
        return state

    def predict(self, row: npt.NDArray[np.float64]) -> float:
        """The prediction for ``row``: a C-contiguous float64 array of ``ncol`` values."""
        if row.dtype != np.float64 or row.size != self.ncol or not row.flags.c_contiguous:
            raise ValueError(f"expected {self.ncol} contiguous float64 values, got {row.dtype} x {row.size}")
        state = self._state()
        self._safe_call(
            self._lib.LGBM_BoosterPredictForMatSingleRowFast(
                state.handle, ctypes.c_void_p(row.ctypes.data), state.out_len_ref, state.out_ptr
            )
        )
        return float(state.out[0])


def _free_all(lib: Any, handles: list[ctypes.c_void_p]) -> None:
    for handle in handles:
        lib.LGBM_FastConfigFree(handle)
    handles.clear()
