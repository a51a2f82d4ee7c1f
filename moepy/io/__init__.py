"""Checkpoints on disk: safetensors files and Hugging Face checkpoint directories (lazy, memory-mapped,
validated), the pieces of FP8 / MXFP4 weights, and llama.cpp GGUF files.

    load_file(path) / save_file(tensors, path, metadata=None)    one .safetensors file
    open_checkpoint(path)                                         a file, a directory or a sharded directory
    open_gguf(path)                                               a GGUF file under the family's HF names
    CheckpointError                                               a malformed file (a ValueError)
"""
from .errors import CheckpointError
from .safetensors import load_file, save_file, read_header, SafetensorsFile
from .checkpoint import Checkpoint, open_checkpoint
from .blockquant import dequantize_fp8, dequantize_mxfp4
from .requant import quantize_tensor


def open_gguf(path):
    """A GGUF file of an MoE architecture as a Mapping of Hugging Face names -> arrays (moepy.io.gguf; needs
    the `gguf` package: pip install moepy[gguf])."""
    from .gguf import open_gguf as _open
    return _open(path)


__all__ = ["CheckpointError", "Checkpoint", "SafetensorsFile", "dequantize_fp8", "dequantize_mxfp4", "load_file",
           "open_checkpoint", "open_gguf", "quantize_tensor", "read_header", "save_file"]
