"""Placement: which device holds each physical expert (a logical expert and its replicas), devices in nodes.

Legend: E logical experts, P physical experts (slots; P = E + replicas), D devices, N nodes,
devices_per_node = D // N. Device d belongs to node d // devices_per_node (nodes are contiguous blocks).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence, Union

import numpy as np


def _as_int_array(x, name: str, ndim: int = 1) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype == bool or (a.size and a.dtype.kind not in "iu"):
        raise ValueError(f"{name} must hold integers, got dtype {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    return a.astype(np.int64)


def _check_int(v, name: str, low: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
    return int(v)


@dataclass(frozen=True, eq=False)
class Placement:
    """Where every physical expert lives.

    num_experts: E logical experts. num_devices: D. devices_per_node: devices in one node (D divisible by it).
    phys_to_logical (P,) int64: the logical expert each physical expert serves.
    phys_to_device (P,) int64: the device holding it.
    Every logical expert has at least one physical expert; two replicas of one expert never share a device.
    Build one with `Placement.from_assignment` or `moepy.sim.place_experts`.
    """

    num_experts: int
    num_devices: int
    devices_per_node: int
    phys_to_logical: np.ndarray
    phys_to_device: np.ndarray
    _counts: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        E = _check_int(self.num_experts, "num_experts")
        D = _check_int(self.num_devices, "num_devices")
        dpn = _check_int(self.devices_per_node, "devices_per_node")
        if D % dpn:
            raise ValueError(f"num_devices={D} is not divisible by devices_per_node={dpn}")
        p2l = _as_int_array(self.phys_to_logical, "phys_to_logical")
        p2d = _as_int_array(self.phys_to_device, "phys_to_device")
        if p2l.shape != p2d.shape:
            raise ValueError(f"phys_to_logical {p2l.shape} and phys_to_device {p2d.shape} differ in length")
        if p2l.size and (p2l.min() < 0 or p2l.max() >= E):
            raise ValueError(f"phys_to_logical: expert ids must be in [0, {E}), got [{p2l.min()}, {p2l.max()}]")
        if p2d.size and (p2d.min() < 0 or p2d.max() >= D):
            raise ValueError(f"phys_to_device: devices must be in [0, {D}), got [{p2d.min()}, {p2d.max()}]")
        counts = np.bincount(p2l, minlength=E)  # (E,)
        if (counts == 0).any():
            raise ValueError(f"expert_to_device: expert {int(np.argmin(counts))} is placed on no device "
                             f"(every expert needs at least one)")
        pair = p2l * D + p2d
        uniq, n = np.unique(pair, return_counts=True)
        if (n > 1).any():
            e, d = divmod(int(uniq[np.argmax(n > 1)]), D)
            raise ValueError(f"expert_to_device: expert {e} has two replicas on device {d}")
        for name, v in (("num_experts", E), ("num_devices", D), ("devices_per_node", dpn),
                        ("phys_to_logical", p2l), ("phys_to_device", p2d), ("_counts", counts)):
            object.__setattr__(self, name, v)
        p2l.setflags(write=False)
        p2d.setflags(write=False)
        counts.setflags(write=False)

    # -- construction -----------------------------------------------------------------------------------------
    @classmethod
    def from_assignment(cls, expert_to_device: Union[Sequence[int], Sequence[Sequence[int]], np.ndarray],
                        num_devices: int, devices_per_node: int = None) -> "Placement":
        """A Placement from expert_to_device: (E,) ints (one device per expert), or a list of E device lists
        (expert e replicated on each device of its list). devices_per_node defaults to num_devices (one node).
        Physical experts are numbered expert by expert, replicas in list order."""
        D = _check_int(num_devices, "num_devices")
        dpn = D if devices_per_node is None else _check_int(devices_per_node, "devices_per_node")
        if isinstance(expert_to_device, np.ndarray) and expert_to_device.ndim == 1:
            lists = [[int(d)] for d in _as_int_array(expert_to_device, "expert_to_device")]
        else:
            lists = []
            for e, item in enumerate(expert_to_device):
                if isinstance(item, (list, tuple, np.ndarray)):
                    lists.append(list(_as_int_array(item, f"expert_to_device[{e}]")))
                else:
                    lists.append(list(_as_int_array([item], f"expert_to_device[{e}]")))
        if not lists:
            raise ValueError("expert_to_device is empty: at least one expert is needed")
        p2l = np.concatenate([np.full(len(lst), e, np.int64) for e, lst in enumerate(lists)])
        p2d = np.concatenate([np.asarray(lst, np.int64).reshape(-1) for lst in lists])
        return cls(len(lists), D, dpn, p2l, p2d)

    # -- sizes ------------------------------------------------------------------------------------------------
    @property
    def num_nodes(self) -> int:
        """N = num_devices // devices_per_node."""
        return self.num_devices // self.devices_per_node

    @property
    def num_physical(self) -> int:
        """P, physical experts (logical ones plus replicas)."""
        return int(self.phys_to_logical.size)

    def node_of_device(self, device=None):
        """The node of `device` (int or array); without an argument the (D,) node of every device."""
        if device is None:
            return np.arange(self.num_devices, dtype=np.int64) // self.devices_per_node
        return np.asarray(device) // self.devices_per_node

    @property
    def phys_to_node(self) -> np.ndarray:
        """(P,) the node of each physical expert."""
        return self.phys_to_device // self.devices_per_node

    # -- queries ----------------------------------------------------------------------------------------------
    def replica_counts(self) -> np.ndarray:
        """(E,) int64 physical experts (replicas, the original included) of each logical expert."""
        return self._counts

    def replicas(self, expert: int) -> np.ndarray:
        """The devices holding logical `expert`, in physical order."""
        if not 0 <= int(expert) < self.num_experts:
            raise ValueError(f"expert must be in [0, {self.num_experts}), got {expert}")
        return self.phys_to_device[self.phys_to_logical == int(expert)]

    def experts_on(self, device: int) -> np.ndarray:
        """The logical experts held by `device`, in physical order."""
        if not 0 <= int(device) < self.num_devices:
            raise ValueError(f"device must be in [0, {self.num_devices}), got {device}")
        return self.phys_to_logical[self.phys_to_device == int(device)]

    def slots_per_device(self) -> np.ndarray:
        """(D,) physical experts on each device."""
        return np.bincount(self.phys_to_device, minlength=self.num_devices)

    def device_load(self, load) -> np.ndarray:
        """(D,) float64 load per device for a logical load (E,): each logical expert's load split evenly over
        its replicas."""
        load = np.asarray(load, dtype=np.float64)
        if load.shape != (self.num_experts,):
            raise ValueError(f"load must have shape ({self.num_experts},), got {load.shape}")
        per_phys = load[self.phys_to_logical] / self._counts[self.phys_to_logical]  # (P,)
        return np.bincount(self.phys_to_device, weights=per_phys, minlength=self.num_devices)

    def balancedness(self, load) -> float:
        """mean / max of device_load(load) (1 = perfectly balanced; EPLB's figure)."""
        dl = self.device_load(load)
        return float(dl.mean() / dl.max()) if dl.max() > 0 else 1.0

    def pairs(self) -> np.ndarray:
        """(P,) sorted keys logical * D + device: the (expert, device) pairs, for comparing placements."""
        return np.sort(self.phys_to_logical * self.num_devices + self.phys_to_device)

    def to_dict(self) -> dict:
        """A JSON-ready description (lists)."""
        return {"num_experts": self.num_experts, "num_devices": self.num_devices,
                "devices_per_node": self.devices_per_node, "phys_to_logical": self.phys_to_logical.tolist(),
                "phys_to_device": self.phys_to_device.tolist()}

    def __repr__(self) -> str:
        reps = self.num_physical - self.num_experts
        return (f"Placement(E={self.num_experts}, P={self.num_physical} ({reps} replicas), D={self.num_devices}, "
                f"nodes={self.num_nodes} x {self.devices_per_node} devices)")
