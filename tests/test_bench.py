"""bench.py: --quick mode measures every row; `claims` trains through train.py, tests through
evaluate.py, and turns the numbers into verdicts by a stated rule."""
import csv
import json
import statistics
from pathlib import Path

import pytest
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


# ------------------------------------------------------------------------------------ bench.py claims
def test_claims_machinery_on_a_tiny_config(synth_root, tmp_path, monkeypatch):
    # Two rows, one seed, one epoch at tiny sizes: train.py on the training split, evaluate.py on the
    # conflicting split (here splits 1 and 2 of the conftest set), numbers read back from their files.
    out = tmp_path / "claims.json"
    argv = ["claims", "--seeds", "1", "--budgets", "short", "--rows", "DA recognition", "--rows", "DA mgda",
            "--train-split", "1", "--conflict-split", "2", "--data-root", synth_root, "--out", str(out),
            "--", "--epochs", "1", "--segments", "2", "--frames", "2", "--crop-size", "32", "--batch-size", "4",
            "--workers", "0", "--log-every", "1"]
    bench.main(argv)
    saved = json.loads(out.read_text())
    assert [r["row"] for r in saved["runs"]] == ["DA recognition", "DA mgda"]   # exact name: not the variants
    for r in saved["runs"]:
        metrics = json.loads((Path(r["run_dir"]) / "metrics.json").read_text())
        conflict = json.loads((Path(r["run_dir"]) / "conflict.json").read_text())
        assert r["indist_top1"] == metrics[-1]["val_top1"] and r["conflict_top1"] == conflict["top1"]
        assert conflict["split"] == 2 and r["train_cmd"][r["train_cmd"].index("--split") + 1] == "1"
        assert (r["epochs"], r["lr"]) == (1, bench.BUDGETS["short"]["lr"])  # `--` flags override the budget's
        assert r["enopr"] == metrics[-1]["val_enopr"] and r["train_s"] > 0 and r["eval_s"] > 0
    rec, mg = saved["runs"]
    with open(Path(mg["run_dir"]) / "log.csv") as f:
        alphas = [float(x["alpha"]) for x in csv.DictReader(f) if x["alpha"]]
    assert len(alphas) == 3 and mg["mean_alpha"] == pytest.approx(statistics.mean(alphas))
    assert rec["mean_alpha"] is None
    metrics = json.loads((Path(rec["run_dir"]) / "metrics.json").read_text())
    assert saved["fig3"]["short"]["seeds"][0]["pairs"] == [[m["val_loss"], m["val_enopr"]] for m in metrics]
    assert all(c["verdict"] == "n/a" for c in saved["claims"])            # one seed decides nothing
    assert (tmp_path / "claims.png").stat().st_size > 1000

    # Run again: the finished runs are reused, nothing is trained.
    monkeypatch.setattr(bench.subprocess, "run", lambda *a, **k: pytest.fail("retrained a finished run"))
    again = bench.main(argv)
    assert again["runs"] == saved["runs"]
    # Another command in the same run folders is refused, not mixed in.
    with pytest.raises(SystemExit, match="another command"):
        bench.main(argv[:-1] + ["2"])


def test_rows_filter():
    assert [n for n, _ in bench.select_rows(["rgb"])] == ["RGB"]
    assert len(bench.select_rows(["mgda"])) == 6 and len(bench.select_rows(None)) == len(bench.CLAIM_ROWS)
    with pytest.raises(SystemExit, match="--rows 'nope' matches no row"):
        bench.select_rows(["nope"])


def test_verdict_rule():
    ms = lambda m, s, n=3: {"mean": m, "std": s, "n": n}
    # holds only when the mean difference EXCEEDS sqrt(sd_A^2 + sd_B^2) (here 5)
    assert bench.compare(ms(10.0, 3.0), ms(4.0, 4.0))["verdict"] == "holds"
    assert bench.compare(ms(9.0, 3.0), ms(4.0, 4.0))["verdict"] == "not shown"
    assert bench.compare(ms(4.0, 4.0), ms(10.0, 3.0))["verdict"] == "reversed"
    assert bench.compare(ms(10.0, None, 1), ms(4.0, 4.0))["verdict"] == "n/a"
    assert bench.compare(None, ms(4.0, 4.0)) == {"verdict": "n/a", "why": "row not run"}
    assert bench.claim_verdict(["holds", "holds"]) == "holds"
    assert bench.claim_verdict(["holds", "not shown"]) == "partly (1 of 2)"
    assert bench.claim_verdict(["reversed", "reversed"]) == "reversed"
    assert bench.claim_verdict(["holds", "n/a"]) == "partly (1 of 2)"
    assert bench.claim_verdict(["n/a"]) == "n/a"
    assert bench.pearson([[1, 2], [2, 4]]) is None                   # two points: r = 1 by construction
    assert bench.pearson([[1, 1], [2, 3], [3, 2]]) == pytest.approx(0.5)
    assert bench.pearson([[1, 5], [2, 5], [3, 5]]) is None            # constant: no r


def fake_run(row, budget, seed, indist, conflict, enopr=None, alpha=None, val_loss=(), val_enopr=()):
    return {"row": row, "budget": budget, "seed": seed, "epochs": 8 if budget == "short" else 24,
            "lr": 0.01 if budget == "short" else 0.005, "indist_top1": indist, "conflict_top1": conflict,
            "enopr": enopr, "mean_alpha": alpha, "val_loss": list(val_loss), "val_enopr": list(val_enopr),
            "train_s": 10.0, "eval_s": 2.0}


def test_table_and_verdicts_from_a_hand_made_claims_json(tmp_path, capsys):
    runs = []
    for s in range(3):
        runs += [fake_run("RGB", "short", s, [80, 82, 81][s], [40, 45, 42][s]),
                 fake_run("DA mgda", "short", s, [70, 90, 50][s], [60, 85, 45][s], 0.15, [0.01, 0.02, 0.0][s]),
                 fake_run("DA constant", "short", s, [95, 96, 97][s], [90, 92, 91][s], 0.16),
                 fake_run("DA scheduler", "short", s, [96, 95, 97][s], [90, 90, 90][s], 0.2),
                 fake_run("DA separate", "short", s, [30, 35, 40][s], [28, 30, 33][s], 0.15),
                 fake_run("DA recognition", "short", s, 90, 80, 0.5, None,
                          [2.0, 1.5, 1.0 + 0.1 * s, 0.8], [0.7, 0.6, 0.55, 0.5 + 0.01 * s])]
    runs.append(fake_run("RGB", "long", 0, 90, 50))                        # one seed: nothing decided
    path = tmp_path / "claims.json"
    path.write_text(json.dumps({"runs": runs, "total_s": 600.0, "command": "python bench.py claims"}))
    bench.main(["claims", "--table", str(path)])
    text = capsys.readouterr().out
    assert "**short: 8 epochs, lr 0.01** (mean ± std over 3 seeds)" in text
    assert "| RGB | 81.0 ± 1.0 | 42.3 ± 2.5 | -38.7 ± 1.5 | – | – |" in text
    assert "| DA mgda | 70.0 ± 20.0 | 63.3 ± 20.2 | -6.7 ± 2.9 | 0.150 ± 0.000 | 0.010 ± 0.010 |" in text
    assert "| RGB | 90.0 (1 seed) | 50.0 (1 seed) | -40.0 (1 seed) | – | – |" in text
    verdicts = {ln.split(" | ")[0]: ln.split(" | ")[1:] for ln in text.splitlines() if ln.startswith("| (")}
    assert verdicts["| (a) DA beats RGB in-distribution"] == ["**partly (1 of 2)**", "**n/a** |"]
    assert verdicts["| (b) DA drops less than RGB from in-distribution to bias-conflicting (Sec. 1, static bias)"][0] == "**holds**"
    assert verdicts["| (c) joint training beats separate training"][0] == "**holds**"
    assert verdicts["| (d) MGDA >= constant lambda"][0] == "**reversed**"
    assert verdicts["| (e) Fig. 3: held-out L_c and L_p positively correlated (PWTP trained on L_c only)"][0] == "**holds**"
    assert "| &nbsp;&nbsp; DA mgda - RGB | not shown: -11.00 vs spread 20.02 | n/a (row not run) |" in text
    assert "| &nbsp;&nbsp; DA constant - RGB | holds: +15.00 vs spread 1.41 |" in text
    assert "Pearson r seed 0: +" in text and "19 runs, 10.0 min in all" in text


def test_fig3_says_when_metrics_have_no_val_loss():
    runs = [fake_run("DA recognition", "short", s, 90, 80, 0.5, None, [None] * 3, [0.7, 0.6, 0.5]) for s in range(3)]
    f = bench.fig3(runs)["short"]
    assert f["pooled_r"] is None and "no val_loss" in f["note"]
    claim_e = [c for c in bench.analyse(runs)["claims"] if c["id"] == "e"][0]
    assert claim_e["verdict"] == "n/a" and "no val_loss" in claim_e["comparisons"][0]["why"]


def test_train_step_runs_algorithm1_once_per_step(monkeypatch):
    # train.py's own step (built as bench.py builds it), --joint mgda with 2 micro-batches:
    # the update is one call of mgda.algorithm1, after both micro-batches.
    import mgda
    import train
    calls = []
    real = mgda.algorithm1
    monkeypatch.setattr(mgda, "algorithm1", lambda *a, **k: calls.append(1) or real(*a, **k))
    args = bench.train_args(["--joint", "mgda", "--mgda-normalize", "none", "--segments", 2, "--frames", 4,
                             "--crop-size", 32, "--depth", 18, "--small", "--batch-size", 2, "--accum-steps", 2])
    run = bench.timing_run(args, torch.device("cpu"))
    clip, labels = torch.randn(4, 8, 3, 32, 32), torch.randint(0, 10, (4,))
    r = train.train_step(run, clip, labels, 0)
    assert calls == [1] and 0.0 <= r.info["alpha"] <= 1.0
