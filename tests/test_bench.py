"""bench.py in --quick mode: every row is measured and lands in the JSON, and the flow baseline works."""
import json

import torch

import bench


def test_quick_bench_writes_every_field(tmp_path):
    out = tmp_path / "bench.json"
    # --no-raft: tests never import torchvision (an optional extra that may not load beside CPU torch)
    bench.main(["--quick", "--no-raft", "--out", str(out), "--data-root", str(tmp_path / "synth")])
    res = json.loads(out.read_text())
    for key in ("device", "torch", "pwtp_vs_backbone", "mgda_vs_constant", "da_vs_flow", "loader_vs_step", "goals"):
        assert key in res, key
    row = res["pwtp_vs_backbone"][0]
    for key in ("pwtp_s", "backbone_s", "ratio", "pwtp_gmacs", "backbone_gmacs", "pwtp_params", "backbone_params"):
        assert row[key] > 0, key
    assert res["mgda_vs_constant"][0]["ratio"] > 0
    flow = res["da_vs_flow"]
    assert flow["da_s"] > 0 and flow["hornschunck_s"] > 0
    assert flow["raft_small_s"] is None and flow["ratio_raft"] is None and "--no-raft" in flow["raft_note"]
    assert res["loader_vs_step"]["loader_clips_per_s"] > 0 and res["loader_vs_step"]["step_clips_per_s"] > 0
    assert set(res["goals"]) == {"pwtp_vs_backbone", "mgda_vs_constant", "da_vs_raft", "da_vs_hornschunck", "loader_vs_step"}


def test_horn_schunck_recovers_a_uniform_shift():
    # A smooth pattern moved one pixel right: the flow's mean u is close to +1 and v to 0.
    H = W = 48
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    img = lambda dx: torch.sin((xx - dx) / 5.0) + torch.cos(yy / 7.0)
    frames = torch.stack([img(0.0), img(1.0)]).unsqueeze(1).repeat(1, 3, 1, 1)   # (2, 3, H, W)
    flow = bench.horn_schunck(frames, alpha=0.5, iters=300)[0, :, 8:-8, 8:-8]
    assert 0.7 < flow[0].mean() < 1.3, flow[0].mean()
    assert flow[1].abs().mean() < 0.2
