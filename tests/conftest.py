"""Test-wide settings: the tests use tiny tensors, which run fastest on one torch thread."""

import torch

torch.set_num_threads(1)
