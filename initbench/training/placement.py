"""Where training data lives on CUDA: kept in GPU memory when it fits, else copied from
pinned memory a batch at a time. On CPU nothing moves."""

from __future__ import annotations

import dataclasses

import torch

from initbench.data.dataset import Split

#: On CUDA a training split moves to GPU memory when it takes at most this share of the
#: free memory; otherwise its batches are copied over from pinned (page-locked) memory.
DEVICE_DATA_SHARE = 0.5


def fits_on_device(nbytes: int, free_bytes: int, share: float = DEVICE_DATA_SHARE) -> bool:
    """Whether data of ``nbytes`` bytes may stay in device memory with ``free_bytes`` free:
    it may take at most ``share`` of it, leaving the rest to the model and activations."""
    return nbytes <= share * free_bytes


def keep_on_device(split: Split, device: torch.device) -> Split:
    """``split`` with its images and labels in CUDA memory when they fit
    (:func:`fits_on_device`), so training batches are gathered on the GPU with no copy
    from the host; on CPU, or when they do not fit, ``split`` itself."""
    if device.type != "cuda" or split.images.device.type == "cuda":
        return split
    free, _ = torch.cuda.mem_get_info(device)
    # Memory PyTorch's caching allocator holds but does not use is free to us, not to CUDA.
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if not fits_on_device(split.images.nbytes + split.labels.nbytes, free):
        return split
    return dataclasses.replace(
        split, images=split.images.to(device), labels=split.labels.to(device)
    )


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``; a CPU tensor bound for CUDA is copied into pinned
    (page-locked) memory first, from which the transfer to the GPU is a direct, asynchronous
    DMA copy."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
