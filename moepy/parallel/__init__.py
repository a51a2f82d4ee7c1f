"""Expert parallelism on MPI (mpi4py): models larger than one machine, results bit-identical to one process.

Run under mpirun: `mpirun -n R python -m moepy eval CHECKPOINT --expert-parallel`, or in Python
`MoEModel.from_pretrained(path, expert_parallel=ExpertParallel())`. Each rank loads its share of every MoE
layer's routed experts (contiguous blocks, or any moepy.sim placement, replicas included) and the replicated
non-expert weights; see expert_parallel.py for the exchange and group.py for the timed collectives and aborts.
"""
from .expert_parallel import ExpertParallel, ExpertParallelLayer, ExpertPlacement, load_placement
from .group import EPError, Group, guarded


def as_expert_parallel(obj) -> ExpertParallel:
    """obj as an ExpertParallel: itself, or a new one over an mpi4py communicator."""
    if isinstance(obj, ExpertParallel):
        return obj
    if hasattr(obj, "Get_rank") and hasattr(obj, "Ialltoallv"):
        return ExpertParallel(obj)
    raise TypeError(f"expert_parallel must be a moepy.parallel.ExpertParallel or an mpi4py communicator, got "
                    f"{type(obj).__name__}")


__all__ = ["ExpertParallel", "ExpertParallelLayer", "ExpertPlacement", "load_placement", "EPError", "Group", "guarded",
           "as_expert_parallel"]
