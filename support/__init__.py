"""Infrastructure that a reader of the paper may skip: run management, checkpoints, device/AMP/distributed, other codebases' weight formats, dataset archive layouts, fast input, the synthetic set."""
