"""Shared pytest setup: the repo root on sys.path and a few threads so tests stay fast on 2 cores."""
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """A tiny synthetic set (4 classes x 4 videos, 32x32, 16 frames), real encoded .avi files:
    split 1 gives 12 training and 4 test videos. Shared by the train and evaluate tests."""
    from support import synthetic
    root = tmp_path_factory.mktemp("synth") / "synth"
    synthetic.write_synthetic(str(root), classes=4, videos_per_class=4, size=32, frames=16, seed=0)
    return str(root)
