"""Infrastructure that a reader of the paper may skip: run management, checkpoints, other codebases' weight formats, dataset archive layouts, the synthetic set."""
