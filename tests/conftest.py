"""Tests run tiny tensors: one intra-op thread is faster than two, and leaves a core free."""

import torch

torch.set_num_threads(1)
