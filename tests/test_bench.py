"""bench.py and its programs in experiments/: --quick mode measures every row (speed.py); `claims`
trains through train.py, tests by its last validation (evaluate.py's single-view test), and turns the
numbers into verdicts by a stated rule (claims.py, with the statistics of stats.py)."""
import argparse
import csv
import json
import math
import random
import statistics
from pathlib import Path

import matplotlib.image
import pytest
import torch

import bench
import evaluate
import mgda
import train
from experiments import claims, speed, stats
from support import synthetic


def test_quick_bench_writes_every_field(tmp_path):
    out = tmp_path / "claims.json"
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
    flow = speed.horn_schunck(frames, alpha=0.5, iters=300)[0, :, 8:-8, 8:-8]
    assert 0.7 < flow[0].mean() < 1.3, flow[0].mean()
    assert flow[1].abs().mean() < 0.2


# ------------------------------------------------------------------------------------ bench.py claims
TINY = ["--", "--epochs", "1", "--segments", "2", "--frames", "2", "--crop-size", "32", "--batch-size", "4",
        "--workers", "0", "--log-every", "1"]


def test_claims_machinery_on_a_tiny_config(tmp_path, monkeypatch, capsys):
    # Two rows, one seed, one epoch, the balanced condition's set at 2 training videos per class and
    # 1 test video per class and background: train.py on split 6's training list, tested by its last
    # validation on the crossed list, numbers read back from its files.
    out = tmp_path / "claims.json"
    argv = ["claims", "--seeds", "1", "--conditions", "balanced", "--rows", "DA recognition", "--rows", "DA mgda",
            "--set-train", "2", "--set-crossed", "1", "--jobs", "2", "--out", str(out)] + TINY
    # --dry-run trains one run (a DA row that validates once) to time the rest, writes no claims.json;
    # the command reuses that run
    plan = bench.main(argv[:1] + ["--dry-run"] + argv[1:])
    assert plan["timed"] == ("balanced", "DA mgda", 0) and not out.exists()
    assert [(r["row"], r["estimate_s"] is None) for r in plan["runs"]] == [("DA recognition", False), ("DA mgda", True)]
    assert plan["estimate_s"] == pytest.approx(plan["runs"][0]["estimate_s"] / 2) and plan["estimate_s"] > 0
    assert "still to do after the timed one" in capsys.readouterr().out
    bench.main(argv)
    saved = json.loads(out.read_text())
    root = tmp_path / "claims_runs" / "sets" / "balanced-32px-train2-crossed1"
    assert saved["sets"] == {"balanced": claims.set_sha256(str(root))} and len(saved["sets"]["balanced"]) == 64
    # the hash is the generated set's: the same arguments written afresh, before any run added a file
    again = synthetic.ensure_synthetic(str(tmp_path / "again"), **dict(claims.SET, bias_train=2, crossed=1,
                                                                      **claims.CONDITIONS["balanced"]))
    assert claims.set_sha256(again) == saved["sets"]["balanced"]
    assert saved["budget"] == {"epochs": 1, "lr": claims.BUDGET["lr"]}                  # what the runs got
    assert saved["machine"]["torch"] == torch.__version__ and saved["machine"]["threads"] == 1
    assert saved["machine"]["jobs"] == 2 and saved["machine"]["cpu"] and len(saved["machine"]["commit"]) == 40
    assert [r["row"] for r in saved["runs"]] == ["DA recognition", "DA mgda"]   # exact name: not the variants
    for r in saved["runs"]:
        run = Path(r["run_dir"])
        metrics = json.loads((run / "metrics.json").read_text())
        test = metrics[-1]
        assert r["top1"] == test["val_top1"] and r["videos"] == 16      # 4 classes x 4 backgrounds
        assert (r["aligned_videos"], r["conflict_videos"]) == (4, 12)
        with open(run / "val_per_video.csv") as f:
            per_video = list(csv.DictReader(f))
        hits = sum(v["label"] == v["predicted"] for v in per_video)
        assert r["aligned_top1"] * 4 + r["conflict_top1"] * 12 == pytest.approx(hits * 100)
        assert r["top1"] == pytest.approx(hits * 100 / 16)
        cmd = r["train_cmd"]
        assert cmd[cmd.index("--split") + 1] == "6" and "balanced-32px-train2-crossed1" in cmd[cmd.index("--data-root") + 1]
        assert (r["epochs"], r["lr"]) == (1, claims.BUDGET["lr"])          # `--` flags override the budget's
        assert r["dc_gain"] == metrics[-1]["dc_gain"] and 0 < r["dc_gain"] < 2
        assert r["enopr"] == test["val_enopr"] and r["train_s"] > 0
        # the mechanism, on the crossed list: DA's energy on object and background pixels, the flips
        assert r["energy_object"] > 0 and r["energy_background"] > 0
        assert r["energy_ratio"] == pytest.approx(r["energy_object"] / r["energy_background"])
        assert 0.0 <= r["flips"] <= 1.0
        # the last validation is evaluate.py's single-view test of last.pt on split 6: same predictions
        evaluate.main(["--checkpoint", str(run / "last.pt"), "--split", "6", "--out", str(run / "test.json"),
                       "--workers", "0"])
        with open(run / "test_per_video.csv") as f:
            assert [(v["path"], v["predicted"]) for v in csv.DictReader(f)] == \
                [(v["path"], v["predicted"]) for v in per_video]
        assert json.loads((run / "test.json").read_text())["top1"] == r["top1"]
    meta = json.loads((Path(saved["runs"][0]["train_cmd"][saved["runs"][0]["train_cmd"].index("--data-root") + 1])
                       / "synth_meta.json").read_text())
    assert meta["bias"] == 0.25 and meta["crossed"] == 1
    rec, mg = saved["runs"]
    with open(Path(mg["run_dir"]) / "log.csv") as f:
        alphas = [float(x["alpha"]) for x in csv.DictReader(f) if x["alpha"]]
    assert len(alphas) == 2 and mg["mean_alpha"] == pytest.approx(statistics.mean(alphas))
    assert rec["mean_alpha"] is None
    metrics = json.loads((Path(rec["run_dir"]) / "metrics.json").read_text())
    assert saved["fig3"]["balanced"]["seeds"][0]["pairs"] == [[m["val_loss"], m["val_enopr"]] for m in metrics]
    assert all(c["verdict"] == "n/a" for c in saved["claims"])            # one seed decides nothing
    # one panel for the condition and one for Fig. 3; no empty mechanism panel without static-bias runs
    assert matplotlib.image.imread(str(tmp_path / "claims.png")).shape[1] == 2 * 650    # 6.5 in at 100 dpi

    # Run again: the finished runs are reused, nothing is trained.
    monkeypatch.setattr(claims.subprocess, "run", lambda *a, **k: pytest.fail("retrained a finished run"))
    again = bench.main(argv)
    assert again["runs"] == saved["runs"]
    # Another command in the same run folders is refused, not mixed in.
    with pytest.raises(SystemExit, match="another command"):
        bench.main(argv[:-1] + ["2"])


def test_separate_gets_its_pwtp_epochs_on_top_of_the_budget():
    a = argparse.Namespace(train_args=["--epochs", "8"])
    cmd = claims.train_command(a, "balanced", "DA separate", 0, "RUN", "SET")
    assert cmd[-4:] == ["--epochs", "10", "--separate-epochs", "2"]       # 8 backbone epochs after 2 of PWTP
    assert "--separate-epochs" not in claims.train_command(a, "balanced", "DA constant 1", 0, "RUN", "SET")


def test_rows_filter():
    assert claims.select_rows(["rgb"]) == ["RGB"]                          # exact name first
    assert claims.select_rows(["mgda"]) == ["DA mgda", "DA mgda loss+"]
    assert len(claims.select_rows(["constant"])) == 5 and claims.select_rows(None) == list(claims.ROWS)
    with pytest.raises(SystemExit, match="matches no row"):
        claims.select_rows(["nope"])
    a = argparse.Namespace(rows=["RGB"], tables=["static-bias"], conditions=None)
    assert claims.select_runs(a) == [("bias 0.95", "RGB")]


def test_aligned_and_conflicting_from_the_per_video_csv(tmp_path):
    root = tmp_path / "set"
    root.mkdir()
    (root / "synth_meta.json").write_text(json.dumps({"videos": {
        "A/v_A_g01_c01.avi": {"aligned": True}, "A/v_A_g02_c01.avi": {"aligned": False},
        "B/v_B_g01_c01.avi": {"aligned": False}, "B/v_B_g02_c01.avi": {"aligned": False}}}))
    rows = [("A/v_A_g01_c01.avi", 0, 0), ("A/v_A_g02_c01.avi", 0, 1), ("B/v_B_g01_c01.avi", 1, 1),
            ("B/v_B_g02_c01.avi", 1, 1)]
    with open(tmp_path / "pv.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "class", "predicted", "predicted_class", "probability"])
        w.writerows([[f"/data/UCF-101/{p}", y, "", k, "", 0.5] for p, y, k in rows])
    got = claims.by_alignment(str(tmp_path / "pv.csv"), str(root))
    assert got == {"aligned_top1": 100.0, "aligned_videos": 1, "conflict_top1": pytest.approx(200 / 3),
                   "conflict_videos": 3}


def test_t_quantile_and_binomial_se():
    for p, df, table in [(0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 4, 2.776), (0.95, 4, 2.132),
                         (0.975, 30, 2.042), (0.995, 9, 3.250)]:        # a printed t table
        assert stats.t_quantile(p, df) == pytest.approx(table, abs=6e-4), (p, df)
    with pytest.raises(ValueError):
        stats.t_quantile(0.3, 2)
    # 108 of 120 videos: p = 109/122, SE = 100 sqrt(p(1-p)/120) = 2.82 points; 0 % still has a spread.
    assert stats.binomial_se(90.0, 120) == pytest.approx(100 * math.sqrt(109 / 122 * 13 / 122 / 120))
    assert 0 < stats.binomial_se(0.0, 120) < stats.binomial_se(50.0, 120)


def test_paired_interval_and_the_two_tests():
    iv = stats.paired_interval([6.0, 8.0, 7.0])             # mean 7, sd 1, t(0.975, 2) = 4.303
    half = stats.t_quantile(0.975, 2) / math.sqrt(3)
    assert (iv["mean"], iv["sd"], iv["n"]) == (7.0, 1.0, 3)
    assert iv["lo"] == pytest.approx(7 - half) and iv["hi"] == pytest.approx(7 + half)
    assert stats.superiority(iv) == "holds"
    assert stats.superiority(stats.paired_interval([3.0, 3.5, 2.5])) == "not shown"   # sure, but < 5 points
    assert stats.superiority(stats.paired_interval([-6.0, -8.0, -7.0])) == "reversed"
    # A zero spread (rows at a ceiling) no longer decides on any difference: the floor widens it.
    assert stats.superiority(stats.paired_interval([6.0, 6.0, 6.0])) == "holds"
    assert stats.superiority(stats.paired_interval([6.0, 6.0, 6.0], floor=5.0)) == "not shown"
    # '>=' is non-inferiority: a tie or a small loss holds, a loss beyond the margin is reversed.
    assert stats.noninferiority(stats.paired_interval([0.0, 0.5, -0.5])) == "holds"
    assert stats.superiority(stats.paired_interval([0.0, 0.5, -0.5])) == "not shown"
    assert stats.noninferiority(stats.paired_interval([-1.0, -2.0, -1.5])) == "holds"
    assert stats.noninferiority(stats.paired_interval([-12.0, -11.0, -13.0])) == "reversed"
    assert stats.noninferiority(stats.paired_interval([-4.0, -9.0, -2.0])) == "not shown"
    assert stats.paired_interval([1.0]) is None
    assert claims.claim_verdict(["holds", "holds"]) == "holds"
    assert claims.claim_verdict(["holds", "not shown"]) == "partly (1 of 2)"
    assert claims.claim_verdict(["reversed", "reversed"]) == "reversed"
    assert claims.claim_verdict(["holds", "n/a"]) == "partly (1 of 2)"
    assert claims.claim_verdict(["n/a"]) == "n/a"


def test_rows_are_paired_by_seed_and_floored_by_the_test_list():
    runs = [fake_run("A", "balanced", s, 60.0 + s, 0.0) for s in (0, 1, 2)] + \
           [fake_run("B", "balanced", s, 50.0 + 2 * s, 0.0) for s in (1, 2, 3)]
    assert claims.paired(runs, "balanced", "A", "B", "top1") == [(1, 61.0, 52.0), (2, 62.0, 54.0)]
    c = claims.compare_rows(runs, "balanced", "A", "B", "top1")
    assert c["seeds"] == [1, 2] and c["diff"] == pytest.approx(8.5) and c["floor"] == 0.0   # no list sizes
    assert claims.compare_rows(runs, "balanced", "A", "C", "top1") == {"verdict": "n/a", "why": "row not run"}
    assert claims.compare_rows(runs[:3] + runs[5:], "balanced", "A", "B", "top1")["verdict"] == "n/a"
    for r in runs:                                           # 40-video lists: the binomial floor applies
        r["videos"] = 40
    c = claims.compare_rows(runs, "balanced", "A", "B", "top1")
    assert c["floor"] == pytest.approx(math.hypot(stats.binomial_se(61.5, 40), stats.binomial_se(53.0, 40)))
    assert c["sd"] < c["floor"] and c["verdict"] == "not shown"


def test_a_row_at_chance_is_compared_by_its_successes():
    # No chance gate: a row that never succeeds (27 +- 1 %, 4 classes) against one that always does
    # (60-64 %) is decided by Fisher's exact test on 5/5 against 0/5 successes, p = 2/252.
    runs = [fake_run("RGB", "balanced", s, 27.0 + (s % 3 - 1), 0.0) for s in range(5)] + \
           [fake_run("DA mgda", "balanced", s, 60.0 + s, 0.0) for s in range(5)]
    for r in runs:
        r["videos"] = 240
    c = claims.compare_rows(runs, "balanced", "DA mgda", "RGB", "top1")
    assert (c["verdict"], c["test"], c["successes"], c["target"]) == ("holds", "Fisher", [5, 0], "holds")
    assert c["p"] == pytest.approx(2 / 252) and c["power"] == c["power_planned"] == 1.0
    back = claims.compare_rows(runs, "balanced", "RGB", "DA mgda", "top1")
    assert (back["verdict"], back["target"], back["power"]) == ("reversed", "reversed", 1.0)
    # 3 seeds of each cannot decide it: the least p of 3/3 against 0/3 is 0.1
    three = claims.compare_rows([r for r in runs if r["seed"] < 3], "balanced", "DA mgda", "RGB", "top1")
    assert three["verdict"] == "not shown" and three["p"] == pytest.approx(0.1) and three["power_planned"] == 1.0


def test_bimodal_outcomes_decide_by_fisher():
    # per-seed top-1 of five runs per row at 64 px, 30 epochs: constant 1 succeeds 5/5, separate
    # 0/5 (Fisher p = 0.008: (c) holds); RGB 4/5, so (a) is Fisher's 5/5 against 4/5: not shown.
    top1 = {"DA constant 1": [98.3, 72.1, 99.2, 89.6, 97.9], "DA separate": [30.8, 27.9, 27.9, 42.9, 29.6],
            "RGB": [97.1, 95.4, 99.6, 99.2, 34.2]}
    runs = [fake_run(row, "balanced", s, v, v) for row, vs in top1.items() for s, v in enumerate(vs)]
    c = claims.compare_rows(runs, "balanced", "DA constant 1", "DA separate", "top1")
    assert (c["verdict"], c["test"], round(c["p"], 4)) == ("holds", "Fisher", 0.0079)
    a = claims.compare_rows(runs, "balanced", "DA constant 1", "RGB", "top1")
    assert (a["verdict"], a["test"], a["successes"], a["p"]) == ("not shown", "Fisher", [5, 4], 1.0)
    assert claims.summarise(runs)["balanced"]["RGB"]["success"] == stats.successes(top1["RGB"], claims.SUCCESS)


def test_a_static_bias_condition_needs_both_controls():
    def condition(cond, diff_conflict, rgb_conflict):
        rs = [fake_run("RGB difference", cond, s, 0, diff_conflict + s) for s in range(3)] + \
             [fake_run("RGB", cond, s, 0, rgb_conflict + s) for s in range(3)]
        for r in rs:
            r["conflict_videos"] = 180
        return rs
    assert claims.validity(condition("bias 0.95", 60.0, 1.0), "bias 0.95")["valid"] is True
    no_motion = claims.validity(condition("bias 0.95", 25.0, 1.0), "bias 0.95")   # positive control at chance
    assert no_motion["valid"] is False and "(RGB difference) succeeds on the conflicting videos in 0/3" in no_motion["why"]
    assert claims.validity(condition("bias 0.95", 60.0, 60.0), "bias 0.95")["valid"] is False  # no shortcut
    assert claims.validity(condition("bias 0.95", 60.0, 1.0)[:4], "bias 0.95")["valid"] is None  # 1 seed of RGB


def test_successes_median_and_mean_over_successes():
    # RGB at 30 epochs and lr 0.005: four runs learn, one does not; None (a run without the figure) is left out
    won = stats.successes([97.1, 95.4, 99.6, 99.2, 34.2, None], 60.0)
    assert (won["k"], won["n"], won["threshold"], won["median"]) == (4, 5, 60.0, 97.1)
    assert won["mean_success"] == pytest.approx((97.1 + 95.4 + 99.6 + 99.2) / 4)
    assert stats.successes([30.0, 25.0], 60.0)["mean_success"] is None
    assert stats.successes([60.0], 60.0)["k"] == 1                     # at the threshold counts


def test_fisher_exact_on_known_tables():
    assert stats.fisher_exact(5, 5, 0, 5) == pytest.approx(2 / 252)          # both extreme tables: 1/252 each
    assert stats.fisher_exact(4, 5, 0, 5) == pytest.approx(12 / 252)
    assert stats.fisher_exact(3, 4, 1, 4) == pytest.approx(0.4857, abs=5e-5)  # Fisher's tea tasting
    assert stats.fisher_exact(1, 10, 11, 14) == pytest.approx(0.002759, abs=5e-7)   # a textbook 2x2 table
    assert stats.fisher_exact(6, 8, 1, 5) == pytest.approx(0.1026, abs=5e-5)
    assert stats.fisher_exact(0, 5, 0, 5) == stats.fisher_exact(5, 5, 5, 5) == 1.0
    assert stats.fisher_exact(1, 10, 11, 14) == pytest.approx(stats.fisher_exact(11, 14, 1, 10))  # rows swapped
    assert stats.fisher_verdict(5, 5, 0, 5) == "holds" and stats.fisher_verdict(0, 5, 5, 5) == "reversed"
    assert stats.fisher_verdict(3, 3, 0, 3) == "not shown"                # p = 0.1: 3 seeds never decide
    with pytest.raises(ValueError, match="fisher_exact"):
        stats.fisher_exact(6, 5, 0, 5)


def test_resampled_power_is_a_bootstrap_of_the_outcomes():
    fisher = lambda s: stats.fisher_verdict(sum(a >= 60 for a, _ in s), len(s), sum(b >= 60 for _, b in s), len(s))
    # every seed of A succeeds and none of B: every resampled experiment sees n/n against 0/n
    assert stats.resampled_power([(90.0, 30.0)] * 5, fisher, "holds") == 1.0
    # A succeeds in half its seeds, B never: the power is P(Binomial(n, 1/2) >= the successes Fisher's
    # test needs against 0/n), exactly; a Gaussian of the same mean and sd would not give it
    pairs = [(90.0, 30.0), (30.0, 30.0)]
    for n, exact in ((5, 6 / 32), (10, None)):
        exact = exact or sum(math.comb(n, k) for k in range(n + 1) if stats.fisher_verdict(k, n, 0, n) == "holds") / 2 ** n
        assert stats.resampled_power(pairs, fisher, "holds", n, trials=4000) == pytest.approx(exact, abs=0.03)
    assert stats.resampled_power(pairs, fisher, "holds", 7) == stats.resampled_power(pairs, fisher, "holds", 7)


def test_effective_budget_is_what_the_runs_get():
    assert claims.effective_budget([]) == claims.BUDGET
    assert claims.effective_budget(["--epochs", "30", "--lr", "0.005"]) == {"epochs": 30, "lr": 0.005}
    assert claims.effective_budget(["--epochs=8", "--frames", "8", "--epochs", "12"]) == {"epochs": 12, "lr": claims.BUDGET["lr"]}


def test_spearman():
    assert stats.spearman([[1, 2], [2, 1], [3, 4], [4, 3]]) == pytest.approx(0.6)   # 1 - 6 sum d^2 / (n^3 - n)
    assert stats.spearman([[1, 1], [2, 4], [3, 9], [4, 1e6]]) == pytest.approx(1.0)  # any monotone relation
    assert stats.spearman([[1, 2], [2, 2], [3, 5]]) == pytest.approx(math.sqrt(3) / 2)  # a tie: mean ranks
    assert stats.spearman([[1, 2], [2, 4]]) is None                  # two points: rho = 1 by construction
    assert stats.spearman([[1, 5], [2, 5], [3, 5]]) is None          # constant: no rho


@pytest.mark.parametrize("seeds,fp,power", [(3, 0.002, 0.22), (5, 0.017, 0.66)])
def test_false_positive_rate_of_the_paired_test(seeds, fp, power):
    # The paired test's error rates where outcomes are Gaussian (rows that both succeed): no true
    # difference (or a true 10 points), per-run sd 5 points in each row, 120 test videos at 90 %;
    # the share of comparisons that hold.
    rng = random.Random(seeds)
    floor = math.hypot(stats.binomial_se(90.0, 120), stats.binomial_se(90.0, 120))
    trials = 4000

    def share_holding(true_diff):
        return sum(stats.superiority(stats.paired_interval(
            [rng.gauss(true_diff, 5 * math.sqrt(2)) for _ in range(seeds)], floor)) == "holds"
            for _ in range(trials)) / trials
    assert share_holding(0.0) == pytest.approx(fp, abs=0.007) and share_holding(0.0) < 0.025
    assert share_holding(10.0) == pytest.approx(power, abs=0.04)


def fake_run(row, cond, seed, top1, conflict, enopr=None, alpha=None, val_loss=(), val_enopr=(), dc_gain=None,
             energy_ratio=None, flips=None):
    return {"row": row, "condition": cond, "seed": seed, "epochs": 10, "lr": 0.01, "classes": 4, "top1": top1,
            "aligned_top1": top1, "conflict_top1": conflict, "enopr": enopr, "mean_alpha": alpha,
            "dc_gain": dc_gain, "val_loss": list(val_loss), "val_enopr": list(val_enopr),
            "energy_ratio": energy_ratio, "flips": flips, "train_s": 10.0}


def test_table_and_verdicts_from_a_hand_made_claims_json(tmp_path, capsys):
    runs = []
    for s in range(3):
        runs += [fake_run("RGB", "balanced", s, [80, 82, 81][s], [40, 45, 42][s]),
                 fake_run("DA mgda", "balanced", s, [70, 90, 50][s], [60, 85, 45][s], 0.15, [0.01, 0.02, 0.0][s]),
                 fake_run("DA constant 1", "balanced", s, [95, 96, 97][s], [90, 92, 91][s], 0.16, dc_gain=0.01),
                 fake_run("DA separate", "balanced", s, [24, 26, 25][s], [25, 25, 25][s], 0.15),
                 fake_run("DA recognition", "balanced", s, 90, 80, 0.5, None,
                          [2.0, 1.5, 1.0 + 0.1 * s, 0.8], [0.7, 0.6, 0.55, 0.5 + 0.01 * s])]
        runs += [fake_run("RGB", "bias 0.95", s, 70, [1, 2, 0][s], flips=0.9), fake_run("RGB difference", "bias 0.95", s, 80,
                                                                                [60, 65, 70][s], energy_ratio=5.0),
                 fake_run("DA constant 10", "bias 0.95", s, 75, [70, 80, 75][s], dc_gain=0.02, energy_ratio=[8, 9, 10][s],
                          flips=0.1)]
        # the dose-response: conflicting top-1 rising with lambda (DA constant 10 above is one dose)
        runs += [fake_run(row, "bias 0.95", s, 60, c + s, energy_ratio=c / 10 + 1)
                 for row, c in (("DA recognition", 2), ("DA constant 1", 20), ("DA constant 30", 90))]
    runs += [fake_run("RGB", "bias 0.95", 3, 70, 0, flips=0.9), fake_run("RGB difference", "bias 0.95", 3, 80, 62,
                                                                         energy_ratio=5.0),  # a 4th seed
             fake_run("DA constant 10", "bias 0.95", 3, 75, 72, dc_gain=0.02, energy_ratio=11, flips=0.1)]
    runs += [fake_run("DA constant 1", "balanced", s, t, c, 0.16, dc_gain=0.01) for s, t, c in ((3, 98, 93), (4, 94, 89))]
    runs += [fake_run("DA separate", "balanced", s, t, t, 0.15) for s, t in ((3, 25), (4, 27))]
    path = tmp_path / "claims.json"
    path.write_text(json.dumps({"runs": runs, "total_s": 600.0, "command": "python bench.py claims"}))
    bench.main(["claims", "--table", str(path)])
    text = capsys.readouterr().out
    assert "### scene-balanced table" in text and "### static-bias table" in text
    assert "**balanced: rho 0.25, camera jitter; 10 epochs, lr 0.01** (mean ± std over 3-5 seeds; 5: DA constant 1, " \
           "DA separate;" in text and "successes: top-1 >= 60 %" in text
    # successes, median, mean of successes, then the means side by side
    assert "| RGB | 3/3 | 81.0 | 81.0 | 81.0 ± 1.0 | 81.0 ± 1.0 | 42.3 ± 2.5 | – | – | – | – | – |" in text
    assert "| DA constant 1 | 5/5 | 96.0 | 96.0 | 96.0 ± 1.6 | 96.0 ± 1.6 | 91.0 ± 1.6 | – | – | 0.010 ± 0.000 | " \
           "0.160 ± 0.000 | – |" in text
    # flips and the object/background energy ratio, per row
    assert "| DA constant 10 | 4/4 | 73.5 | 74.2 | 75.0 ± 0.0 | 75.0 ± 0.0 | 74.2 ± 4.3 | 0.10 ± 0.00 | 9.50 ± 1.29 |" in text
    # the dose-response over lambda = 0, 1, 10, 30 (DA constant 10 at 4 seeds, the others at 3)
    assert "Dose-response over lambda = 0, 1, 10, 30 (conflicting top-1, 13 runs): Spearman rho +0.9" in text
    assert "**rises**" in text
    assert "| DA separate | 0/5 | 25.0 | – | 25.4 ± 1.1 |" in text and "| DA mgda | 2/3 | 70.0 | 80.0 | 70.0 ± 20.0 |" in text
    assert "**bias 0.95: rho 0.95, camera jitter; 10 epochs, lr 0.01** (mean ± std over 3-4 seeds; 4: RGB, RGB difference, " \
           "DA constant 10;" in text
    assert "successes: conflicting top-1 >= 60 %" in text
    assert "Condition valid: positive control (RGB difference) succeeds on the conflicting videos in 4/4 seeds, " \
           "negative control (RGB) in 0/4." in text
    verdicts = {tuple(ln.split(" | ")[:2]): ln.split(" | ")[2] for ln in text.splitlines() if ln.startswith("| (")}
    assert verdicts[("| (a) DA beats RGB", "balanced")] == "**partly (1 of 3)** |"   # mgda not shown, loss+ not run
    assert verdicts[("| (b) DA beats RGB on conflicting videos (Sec. 1, static bias)", "bias 0.95")].startswith("**partly")
    assert verdicts[("| (c) joint training beats separate training", "balanced")] == "**partly (1 of 3)** |"  # no gate
    assert verdicts[("| (e) Fig. 3: held-out L_c and L_p positively correlated (PWTP trained on L_c only)",
                     "balanced")] == "**holds** |"
    # DA mgda succeeds in 2 of 3 seeds (70, 90, 50), RGB in 3 of 3: Fisher's test, which 3 seeds cannot pass
    assert "| &nbsp;&nbsp; DA mgda - RGB | | not shown (Fisher): 2/3 vs 3/3 successes, p = 1 (mean difference -11.0); " \
           "P(holds) " in text
    # both rows succeed in every seed: the paired test on top-1
    assert "| &nbsp;&nbsp; DA constant 1 - RGB | | holds (paired): +15.00 [+12.52, +17.48], 3 seeds, no floor" in text
    assert "| &nbsp;&nbsp; DA constant 1 - DA separate | | holds (Fisher): 5/5 vs 0/5 successes, p = 0.0079 " \
           "(mean difference +70.6); P(holds) 1.00 at 5 seeds, 1.00 at 10 |" in text
    assert "| &nbsp;&nbsp; DA constant 10 - RGB | | holds (Fisher): 4/4 vs 0/4 successes, p = 0.029" in text
    assert "Spearman rho seed 0: +1.00" in text and "40 runs, 10.0 min in all" in text
    assert "Power: the share of 2000 simulated experiments" in text        # the rule, with how power is found
    claims.plot_claims(json.loads(path.read_text()), str(tmp_path / "claims.png"))
    assert (tmp_path / "claims.png").stat().st_size > 1000


def test_table_merges_several_claims_runs(tmp_path, capsys):
    # Two `claims` runs of other rows: one report, one run per (condition, row, seed), the later file
    # winning, wall times summed, both commands shown; the merged JSON and plot go to --out.
    first = [fake_run("RGB", "balanced", s, 25 + s, 25) for s in range(3)]
    second = [fake_run("DA constant 10", "balanced", s, 80 + s, 80) for s in range(3)] + \
        [fake_run("RGB", "balanced", 2, 30, 30)]
    paths = []
    for i, runs in enumerate((first, second)):
        paths.append(str(tmp_path / f"c{i}.json"))
        with open(paths[-1], "w") as f:
            json.dump({"runs": runs, "total_s": 60.0 * (i + 1), "command": f"python bench.py claims #{i}"}, f)
    out = tmp_path / "all.json"
    bench.main(["claims", "--table", *paths, "--out", str(out)])
    text = capsys.readouterr().out
    merged = json.loads(out.read_text())
    assert len(merged["runs"]) == 6 and merged["total_s"] == 180.0
    assert [r["top1"] for r in merged["runs"] if r["row"] == "RGB"] == [25, 26, 30]
    assert "6 runs, 3.0 min in all" in text and "`python bench.py claims #0`; `python bench.py claims #1`" in text
    assert (tmp_path / "all.png").stat().st_size > 1000


def test_mgda_slightly_below_constant_is_non_inferior():
    # Claim (d) is '>=': one point below constant, tightly measured, holds; ten points below is reversed.
    runs = [fake_run("DA constant 1", "balanced", s, 90.0 + s, 0.0) for s in range(3)]
    close = runs + [fake_run("DA mgda", "balanced", s, 89.0 + s + 0.2 * (s == 1), 0.0) for s in range(3)]
    far = runs + [fake_run("DA mgda", "balanced", s, 80.0 + s + 0.2 * (s == 1), 0.0) for s in range(3)]
    claim = lambda rs: [c for c in claims.analyse(rs)["claims"] if c["id"] == "d"][0]["comparisons"][0]["verdict"]
    assert claim(close) == "holds" and claim(far) == "reversed"


def test_fig3_says_when_metrics_have_no_val_loss():
    runs = [fake_run("DA recognition", "balanced", s, 90, 80, 0.5, None, [None] * 3, [0.7, 0.6, 0.5]) for s in range(3)]
    f = claims.fig3(runs)["balanced"]
    assert f["pooled_rho"] is None and "no val_loss" in f["note"]
    claim_e = [c for c in claims.analyse(runs)["claims"] if c["id"] == "e"][0]
    assert claim_e["verdict"] == "n/a" and "no val_loss" in claim_e["comparisons"][0]["why"]


def test_train_step_runs_algorithm1_once_per_step(monkeypatch):
    # train.py's own step (built as experiments/speed.py builds it), --joint mgda with 2 micro-batches:
    # the update is one call of mgda.algorithm1, after both micro-batches.
    calls = []
    real = mgda.algorithm1
    monkeypatch.setattr(mgda, "algorithm1", lambda *a, **k: calls.append(1) or real(*a, **k))
    args = speed.train_args(["--joint", "mgda", "--mgda-normalize", "none", "--segments", 2, "--frames", 4,
                             "--crop-size", 32, "--depth", 18, "--small", "--batch-size", 2, "--accum-steps", 2])
    run = speed.timing_run(args, torch.device("cpu"))
    clip, labels = torch.randn(4, 8, 3, 32, 32), torch.randint(0, 10, (4,))
    r = train.train_step(run, clip, labels, 0)
    assert calls == [1] and 0.0 <= r.info["alpha"] <= 1.0
