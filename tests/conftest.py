"""Test-wide settings.

- The tests use tiny tensors, which run fastest on one torch thread.
- Hypothesis runs every property at least 200 examples (the ``ci`` profile, loaded by default;
  ``HYPOTHESIS_PROFILE=dev`` runs 20 for a quick local loop). No deadline: the machine is
  shared and a slow example is not a failure. Tests that set ``@settings(max_examples=...)``
  themselves (costly identities) keep their own count.
"""

import os

import torch
from hypothesis import settings

torch.set_num_threads(1)

settings.register_profile("ci", max_examples=200, deadline=None)
settings.register_profile("dev", max_examples=20, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
