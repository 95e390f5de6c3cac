"""`python bench.py claims`: can the paper's claims fail here, and which way do they go?

Two tables, each row trained through `python train.py` (a subprocess: the code a user runs) and
tested by its last validation (the single-view test of `python evaluate.py`, on the same list), on
synthetic sets written for the purpose (support/synthetic.py; SET, CONDITIONS): each set's training
list shows a class on its own background for a fraction rho of its videos, and its test list crosses
every class with every background in motion-matched groups, so one list gives aligned (own background)
and conflicting top-1, and the share of predictions a background swap alone flips.
  scene-balanced table  rho = 1/4: no background says anything about the class. Claims (a) DA beats RGB,
                        (c) joint beats separate training, (d) MGDA >= constant lambda (non-inferiority),
                        (e) Fig. 3 (Spearman), on a row that learns.
  static-bias table     rho = 0.95 with camera jitter: claim (b), DA beats RGB on the conflicting videos,
                        judged only where the positive control (RGB difference) reads motion and the
                        negative control (RGB) does not; and the dose-response over the weight on L_p
                        (lambda = 0 ... 30, DOSES) with a trend test.
A run either learns or stays near chance, so the endpoints (RULE, stated before a run) count successes:
per row, the runs at >= SUCCESS % top-1 (conflicting top-1 under static bias), the median and the
mean over successes; between rows, Fisher's exact test on those counts, or, where both rows succeed
in >= 90 % of seeds, the paired t interval of their top-1; for each comparison the power to reach
its verdict again, from resampling the observed per-seed outcomes. Beside them, per row: top-1,
aligned and conflicting top-1, the flips, the representation's energy on object against background
pixels (experiments/scene.py), DA's DC gain s, ENoPR and mean alpha, mean ± std over seeds. The
statistics are experiments/stats.py. The results JSON records the machine (torch, threads, CPU) and
a SHA-256 of each generated set. Runs are small (32 px, S = 4, T = 4) and run --jobs at a time, each
on one thread with no loader processes.
    python bench.py claims                                  # both tables, 10 seeds
    python bench.py claims --tables static-bias --seeds 5   # one table, fewer seeds
    python bench.py claims --conditions balanced --rows RGB --seeds 2 -- --epochs 15
    python bench.py claims --table claims.json              # the tables and verdicts again, no training
    python bench.py claims --table a.json b.json --out all.json   # several claims runs as one report
    python bench.py claims --dry-run                        # the runs and their time here, from one run
Runs go to claims_runs/ (--out-dir); rerunning the same command continues or reuses them. Each run's wall
time is recorded in claims.json, and the progress lines print an ETA from the runs so far. What the
runs cost on 2 CPU cores, and what they found, is in docs/CLAIMS.md.
"""
import argparse
import concurrent.futures
import csv
import hashlib
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

import torch

import visualize                     # matplotlib (Agg) and its atomic save
from experiments import scene
from experiments.stats import (LEVEL, MIN_EFFECT, NI_MARGIN, binomial_se, fisher_exact, fisher_verdict, mean_std,
                               noninferiority, paired_interval, resampled_power, spearman, successes, superiority,
                               trend_power, trend_test)
from support import synthetic
from support.framecounts import COUNT_CACHE_NAME
from support.system import atomic_json, fmt_time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # where train.py is


# ---------------------------------------------------------------------------------------------
# What is trained, and what is claimed
# ---------------------------------------------------------------------------------------------
# Rows: name -> train.py arguments. Between rows only the representation and the joint training
# change; every other flag is train.py's synthetic default (TSM-R18 small, batch 8), RUN_FLAGS, BUDGET's
# --epochs/--lr, and what follows `--`. The weight on L_p is the dose of DOSES: lambda = 0 is PWTP
# trained by L_c alone (Fig. 3's model), then the constant lambdas of Eq. 9.
ROWS = {
    "RGB": ["--input", "rgb"],
    "RGB difference": ["--input", "rgbdiff"],
    "DA recognition": ["--input", "da", "--joint", "recognition"],          # L_c alone: lambda = 0
    **{f"DA constant {lam:g}": ["--input", "da", "--joint", "constant", "--lam", f"{lam:g}"]
       for lam in (0.3, 1, 3, 10, 30)},
    "DA mgda": ["--input", "da", "--joint", "mgda", "--mgda-normalize", "none", "--mgda-space", "params"],
    "DA mgda loss+": ["--input", "da", "--joint", "mgda", "--mgda-normalize", "loss+", "--mgda-space", "params"],
    # PWTP first fitted to L_p alone (the paper's unsupervised use of PWTP), then frozen. run_epochs puts
    # separate_epochs() epochs in front of the budget, and train.py restarts the warm-up and cosine at
    # the phase boundary, so its backbone gets the same steps and schedule as any other row's.
    "DA separate": ["--input", "da", "--joint", "separate"],
}
DOSES = [("DA recognition", 0.0)] + [(f"DA constant {lam:g}", lam) for lam in (0.3, 1, 3, 10, 30)]
# Every run is small and single-threaded, so that many seeds fit in 30 minutes on 2 cores: several
# runs at once (--jobs), each one thread (OMP_NUM_THREADS=1) and no loader processes (ours).
# PWTP's learning rate x5 (as Appendix A gives ViT; ours here, from the calibration in
# docs/CLAIMS.md): a DA row that does not learn the motion on the balanced set says nothing about
# the scene.
RUN_FLAGS = ["--crop-size", "32", "--segments", "4", "--frames", "4", "--workers", "0", "--pwtp-lr-mult", "5"]
# Conditions: one synthetic set each (support/synthetic.py), written once beside the runs, as PNG
# frame folders (lossless: every machine reads the same pixels). Every row trains on its split-6
# training list (SET["bias_train"] videos per class, a fraction rho of them on the class's own
# background) and is tested on its split-6 crossed list: SET["crossed"] groups per class, each the
# same video on every background (4 x 4 x 15 = 240 videos, 60 aligned and 180 conflicting), so aligned
# and conflicting top-1 come from the same videos and a background swap alone can flip a prediction.
# rho = 1/4 = 1/classes puts every background equally often in every class: the scene-balanced
# condition. 32 px frames with the object at three times its default size (smaller, RGB does not
# learn it within the budget: docs/CLAIMS.md, calibration).
SET = {"classes": 4, "videos_per_class": 4, "bias_train": 60, "bias_test": 1, "crossed": 15,
       "size": 32, "frames": 16, "object_scale": 3.0, "image_format": "png"}
SPLIT = 6
CONDITIONS = {
    "balanced": {"bias": 0.25, "jitter": True},
    "bias 0.95": {"bias": 0.95, "jitter": True},
}
TABLES = {
    "scene-balanced": {"conditions": ["balanced"],
                       "rows": ["RGB", "DA recognition", "DA separate", "DA constant 1", "DA constant 30", "DA mgda",
                                "DA mgda loss+"]},
    "static-bias": {"conditions": ["bias 0.95"],
                    "rows": ["RGB", "RGB difference", *(r for r, _ in DOSES), "DA mgda", "DA mgda loss+",
                             "DA separate"]},
}
# The budget (ours), calibrated once (docs/CLAIMS.md): at it RGB learns the balanced set in most
# seeds, and under static bias RGB takes the shortcut while the RGB difference reads the motion.
BUDGET = {"epochs": 10, "lr": 0.005}
DEFAULT_SEEDS = 10
CONTROLS = ("RGB difference", "RGB")   # (positive, negative) control of every static-bias condition
FIG3_ROW, FIG3_CONDITION = "DA recognition", "balanced"   # Fig. 3: PWTP trained with L_c only, validated each epoch
BIAS = ["bias 0.95"]
# The claims, each judged on `metric` in its conditions by comparisons of two rows (RULE).
CLAIMS = [
    {"id": "a", "claim": "DA beats RGB", "metric": "top1", "conditions": ["balanced"],
     "pairs": [("DA mgda", "RGB"), ("DA mgda loss+", "RGB"), ("DA constant 1", "RGB")]},
    {"id": "b", "claim": "DA beats RGB on conflicting videos (Sec. 1, static bias)", "metric": "conflict_top1",
     "conditions": BIAS, "pairs": [(r, "RGB") for r in TABLES["static-bias"]["rows"] if r.startswith("DA")]},
    {"id": "c", "claim": "joint training beats separate training", "metric": "top1", "conditions": ["balanced"],
     "pairs": [("DA constant 1", "DA separate"), ("DA mgda", "DA separate"), ("DA mgda loss+", "DA separate")]},
    {"id": "d", "claim": "MGDA >= constant lambda (non-inferior within 5 points)", "metric": "top1",
     "conditions": ["balanced"], "pairs": [("DA mgda", "DA constant 1"), ("DA mgda loss+", "DA constant 1")],
     "test": "noninferiority"},
    {"id": "e", "claim": "Fig. 3: held-out L_c and L_p positively correlated (PWTP trained on L_c only)",
     "metric": "fig3", "conditions": ["balanced"], "pairs": []},
]


# ---------------------------------------------------------------------------------------------
# Every row trained through train.py and tested by its last validation
# ---------------------------------------------------------------------------------------------
def slug(name):
    return name.lower().replace(" ", "_").replace("+", "plus").replace(".", "")


def select_rows(filters):
    """ROWS' names kept by --rows: a row's exact name (case-insensitive) or, else, a substring of names."""
    names = list(ROWS)
    if not filters:
        return names
    keep = set()
    for f in filters:
        hit = [n for n in names if n.lower() == f.lower()] or [n for n in names if f.lower() in n.lower()]
        if not hit:
            raise SystemExit(f"bench.py claims: --rows {f!r} matches no row; the rows are: {', '.join(names)}")
        keep.update(hit)
    return [n for n in names if n in keep]


def select_runs(a):
    """[(condition, row)] of the tables, conditions and rows asked for, in TABLES' order."""
    rows, out = select_rows(a.rows), []
    for t in a.tables or list(TABLES):
        for cond in TABLES[t]["conditions"]:
            if not a.conditions or cond in a.conditions:
                out += [(cond, r) for r in TABLES[t]["rows"] if r in rows]
    if not out:
        raise SystemExit("bench.py claims: the --tables, --conditions and --rows given select no run")
    return out


def read_json(path, what="bench.py claims"):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise SystemExit(f"{what}: cannot read {path} ({e})") from None


def call(cmd, log_path):
    """Run one command on one thread (OMP_NUM_THREADS=1: --jobs runs side by side, and the thread
    count, which changes a run's numbers, is fixed), its output into log_path; a failure stops the
    benchmark, saying where to look."""
    with open(log_path, "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")).returncode
    if rc != 0:
        with open(log_path) as log:
            tail = log.read()[-3000:]
        raise SystemExit(f"bench.py claims: `{' '.join(cmd)}` failed (exit {rc}); its output is in {log_path}:\n{tail}")


def set_root(a, cond):
    """Where the synthetic set of a condition lives: OUT_DIR/sets/, named by the condition and its sizes."""
    return os.path.join(a.out_dir, "sets", f"{slug(cond)}-{SET['size']}px-train{a.set_train}-crossed{a.set_crossed}")


def condition_set(a, cond):
    """The synthetic set of a condition (SET with its rho and jitter), written on first use under
    OUT_DIR/sets/ (support/synthetic.py; the same arguments always write the same bytes)."""
    spec = dict(SET, bias_train=a.set_train, crossed=a.set_crossed, **CONDITIONS[cond])
    root = set_root(a, cond)
    if not os.path.isfile(os.path.join(root, "synth_meta.json")):
        print(f"  writing the '{cond}' set to {root}", flush=True)
    return synthetic.ensure_synthetic(root, **spec)


def set_sha256(root):
    """One SHA-256 over a generated set: each file's path below `root` and its bytes, in sorted order,
    leaving out the frame-count cache train.py adds beside the videos. None where no set is there."""
    if not os.path.isfile(os.path.join(root, "synth_meta.json")):
        return None
    paths = sorted(os.path.relpath(os.path.join(d, f), root).replace(os.sep, "/")
                   for d, _, files in os.walk(root) for f in files if f != COUNT_CACHE_NAME)
    h = hashlib.sha256()
    for rel in paths:
        h.update(rel.encode() + b"\0")
        with open(os.path.join(root, rel), "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def machine(jobs):
    """What the runs' numbers depend on besides the code and the set: torch's version, the threads of
    each run (call() gives every train.py OMP_NUM_THREADS=1) and how many ran at once, the CPU and its
    cores, and the code's git commit where there is one."""
    cpu = platform.processor() or platform.machine()
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    try:
        git = subprocess.Popen(["git", "-C", ROOT, "rev-parse", "HEAD"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
        commit = git.communicate()[0].strip()
    except OSError:                          # no git: the record says so
        commit = ""
    return {"torch": torch.__version__, "threads": 1, "jobs": jobs, "omp_num_threads": "1", "cpu": cpu,
            "cores": os.cpu_count(), "python": platform.python_version(), "commit": commit or None}


def by_alignment(per_video_csv, root):
    """Top-1 (%) and videos on the aligned (own background) and the conflicting videos of the crossed
    list, from a per-video CSV (train.py's val_per_video.csv, evaluate.py's _per_video.csv) and the
    set's synth_meta.json."""
    videos = read_json(os.path.join(root, "synth_meta.json"))["videos"]
    hits = {True: [0, 0], False: [0, 0]}
    with open(per_video_csv, newline="") as f:
        for row in csv.DictReader(f):
            key = "/".join(row["path"].replace("\\", "/").split("/")[-2:])    # Class/v_Class_gNN_c01.avi
            aligned = videos.get(key, {}).get("aligned")
            if aligned is None:
                raise SystemExit(f"bench.py claims: {key} ({per_video_csv}) is not a crossed video of {root}")
            hits[aligned][0] += row["label"] == row["predicted"]
            hits[aligned][1] += 1
    pct = lambda h: 100.0 * h[0] / h[1] if h[1] else None
    return {"aligned_top1": pct(hits[True]), "aligned_videos": hits[True][1],
            "conflict_top1": pct(hits[False]), "conflict_videos": hits[False][1]}


def read_run(run_dir, root):
    """The numbers of one finished run: metrics.json's last validation (the test: the crossed list is
    split 6's validation list; Fig. 3 reads every epoch's) and the val_per_video.csv it wrote, the last
    epoch's mean DC gain s of DA, log.csv's alpha column, and the budget args.json records."""
    metrics = [m for m in read_json(os.path.join(run_dir, "metrics.json")) if not m.get("partial")]
    if not metrics or "val_top1" not in metrics[-1]:
        raise SystemExit(f"bench.py claims: {run_dir}/metrics.json holds no validated last epoch")
    with open(os.path.join(run_dir, "log.csv"), newline="") as f:
        alphas = [float(r["alpha"]) for r in csv.DictReader(f) if r.get("alpha")]
    targs, test = read_json(os.path.join(run_dir, "args.json")), metrics[-1]
    classes = read_json(os.path.join(root, "synth_meta.json"))["classes"]
    return {"epochs": targs["epochs"], "lr": targs["lr"], "classes": len(classes),
            "top1": test["val_top1"], "videos": test["val_videos"],
            **by_alignment(os.path.join(run_dir, "val_per_video.csv"), root),
            "dc_gain": test.get("dc_gain"), "enopr": test.get("val_enopr"),
            "mean_alpha": statistics.mean(alphas) if alphas else None,
            # per epoch, for Fig. 3 (val_loss: the held-out cross-entropy; None where metrics.json has none)
            "val_loss": [m.get("val_loss") for m in metrics], "val_enopr": [m.get("val_enopr") for m in metrics]}


def separate_epochs(epochs):
    """PWTP-only epochs of the `separate` row, put in front of the budget: a quarter of it (ours, as
    train.py's default --separate-epochs)."""
    return max(1, round(epochs / 4))


def effective_budget(train_args):
    """BUDGET as the runs get it: an --epochs or --lr after `--` (the last one given) replaces its value."""
    budget = dict(BUDGET)
    for i, arg in enumerate(train_args):
        flag, eq, value = arg.partition("=")
        key = flag[2:] if flag.startswith("--") else None
        if key in budget and (eq or i + 1 < len(train_args)):
            budget[key] = type(BUDGET[key])(value if eq else train_args[i + 1])
    return budget


def run_epochs(a, name):
    """Epochs one run of row `name` trains: the budget's, and the `separate` row's PWTP epochs in front."""
    epochs = effective_budget(a.train_args)["epochs"]
    return epochs + separate_epochs(epochs) if "separate" in ROWS[name] else epochs


def train_command(a, cond, name, seed, run_dir, root):
    """train.py's command line of one run; the `separate` row gets separate_epochs() more epochs.
    Only FIG3_ROW in FIG3_CONDITION validates after every epoch (Fig. 3 needs each epoch's held-out
    losses); the others after the last only (--val-every 0, which leaves training unchanged), the
    test read_run reads."""
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--dataset", "synthetic", "--data-root", root,
           "--split", str(SPLIT), *RUN_FLAGS, "--epochs", str(BUDGET["epochs"]), "--lr", str(BUDGET["lr"]), *ROWS[name],
           "--seed", str(seed), "--out", run_dir, "--resume", "auto",
           "--val-every", "1" if (name, cond) == (FIG3_ROW, FIG3_CONDITION) else "0",
           *a.train_args]
    if "separate" in ROWS[name]:
        pwtp_epochs = separate_epochs(effective_budget(a.train_args)["epochs"])
        cmd += ["--epochs", str(run_epochs(a, name)), "--separate-epochs", str(pwtp_epochs)]
    return cmd


def run_record(a, cond, name, seed):
    """(run folder, train.py command, the finished run's record or None) of one row, seed and
    condition; a folder that holds a run of another command is an error."""
    run_dir = os.path.join(a.out_dir, slug(cond), slug(name), f"seed{seed}")
    train_cmd = train_command(a, cond, name, seed, run_dir, set_root(a, cond))
    path = os.path.join(run_dir, "bench_run.json")
    old = read_json(path) if os.path.exists(path) else {}
    if old and old.get("train_cmd", [None])[1:] != train_cmd[1:]:
        raise SystemExit(f"bench.py claims: {run_dir} holds a run of another command "
                         f"({' '.join(old.get('train_cmd', ['?'])[1:])}); pass another --out-dir or remove it")
    return run_dir, train_cmd, (old if old.pop("done", False) else None)


def run_one(a, cond, name, seed):
    """Train one row for one seed in one condition; its last validation tests the final weights on the
    crossed list. A run folder that already holds the same command is continued (train.py --resume
    auto) or, when finished, reused. train_s: wall time of the call that finished the run, testing
    included (a continued run counts only its continuation)."""
    run_dir, train_cmd, done = run_record(a, cond, name, seed)
    if done:
        return dict(done, reused=True)
    root = condition_set(a, cond)
    record_path = os.path.join(run_dir, "bench_run.json")
    os.makedirs(run_dir, exist_ok=True)
    atomic_json({"row": name, "condition": cond, "seed": seed, "train_cmd": train_cmd}, record_path)
    t0 = time.time()
    call(train_cmd, os.path.join(run_dir, "train.log"))
    rec = {"row": name, "condition": cond, "seed": seed, "run_dir": run_dir, "train_cmd": train_cmd,
           "train_s": time.time() - t0, **read_run(run_dir, root)}
    # the mechanism where the scene is (experiments/scene.py): DA's energy on object and background
    # pixels of the crossed list, and the predictions a background swap alone flips
    rec.update(scene.scene_energy(os.path.join(run_dir, "last.pt"), root),
               flips=scene.flips(os.path.join(run_dir, "val_per_video.csv"), root))
    atomic_json(dict(rec, done=True), record_path)
    return dict(rec, reused=False)


# --- how the statistics decide (experiments/stats.py holds them) -------------------------------
METRICS = ("top1", "aligned_top1", "conflict_top1", "flips", "dc_gain", "energy_ratio", "enopr", "mean_alpha")
VIDEOS = {"top1": "videos", "aligned_top1": "aligned_videos", "conflict_top1": "conflict_videos"}
# Fixed before the runs (ours): a run learns its task or stays near chance (docs/CLAIMS.md shows the
# two clusters), so the endpoints count successes and compare top-1 itself only between reliable rows.
SUCCESS = 60.0          # points of top-1 (conflicting top-1 under static bias) at which a run succeeds
RELIABLE = 0.9          # rows that both succeed in this share of seeds are compared by the paired test
PLANNED_SEEDS = 10      # power is also given at this many seeds: the least a verdict should rest on
POWER_TRIALS = 2000     # resampled experiments behind each power figure
RULE = ("Endpoints. A run succeeds when its top-1 is at least "
        f"{SUCCESS:g} % (in a static-bias condition: its conflicting top-1); each row reports its successes "
        "k/n, the median and the mean over its successes. A comparison 'A > B' uses the seeds both rows ran "
        "(a seed gives both rows the same data order). Where both rows succeed in at least "
        f"{100 * RELIABLE:g} % of those seeds it is the paired test on top-1: the two-sided {100 * LEVEL:g} % t "
        "interval of the mean per-seed difference A - B, with the per-seed standard deviation floored at the "
        "binomial standard error of a difference of two runs on the test list (sqrt(p(1-p)/n) for each run, "
        "p from the row's mean, n the list's videos); it holds when the interval lies above 0 and the mean "
        f"difference is at least {MIN_EFFECT:g} points, is reversed when the interval lies below 0 and the mean "
        f"is at most -{MIN_EFFECT:g} points, and is not shown otherwise. Elsewhere it is Fisher's exact test "
        f"(two-sided) on the success counts: it holds when p < {1 - LEVEL:.2g} and A succeeds more often, is "
        f"reversed when p < {1 - LEVEL:.2g} and A succeeds less often, and is not shown otherwise. Either needs "
        ">= 2 seeds run by both rows. Claim (d), 'MGDA >= constant lambda', is non-inferiority: by the "
        f"paired test it holds when the interval lies above -{NI_MARGIN:g} points and is reversed when it lies "
        f"below -{NI_MARGIN:g}; by Fisher's test as above. A static-bias condition is valid only when its "
        f"positive control ({CONTROLS[0]}) succeeds on the conflicting videos in at least {100 * RELIABLE:g} % "
        f"of its seeds and its negative control ({CONTROLS[1]}) in none; claim (b) is judged only in valid "
        f"conditions. Claim (e) is judged only where its row ({FIG3_ROW}) succeeds in at least "
        f"{100 * RELIABLE:g} % of its seeds (Fig. 3 is about a model that learns), and holds when the t "
        "interval of the per-seed Spearman rho (held-out L_c vs ENoPR over the epochs) lies above 0. A claim "
        "holds when all its comparisons hold, is reversed when all are reversed, and holds partly when some "
        f"hold. Power: the share of {POWER_TRIALS} simulated experiments, each drawing its seeds with "
        "replacement from the observed per-seed pairs (a bootstrap of the outcomes, not a Gaussian), in "
        "which this procedure reaches the verdict observed ('holds' where nothing was shown): P(holds) or "
        f"P(reversed), at the seeds run and at {PLANNED_SEEDS}.")


def values(runs, cond, row, metric):
    """`metric` of every run of `row` in `cond` that recorded it, in the order run."""
    return [r[metric] for r in runs if r["condition"] == cond and r["row"] == row and r.get(metric) is not None]


def success_metric(cond):
    """What a run of `cond` succeeds on: conflicting top-1 under static bias, else top-1."""
    return "conflict_top1" if cond in BIAS else "top1"


def paired(runs, cond, row_a, row_b, metric):
    """[(seed, A's value, B's value)] for every seed both rows ran with a value in condition `cond`:
    the same seed gives both rows the same data order, so their difference per seed cancels what the
    order does."""
    def by_seed(row):
        return {r["seed"]: r for r in runs if r["condition"] == cond and r["row"] == row and r.get(metric) is not None}
    a, b = by_seed(row_a), by_seed(row_b)
    return [(s, a[s][metric], b[s][metric]) for s in sorted(set(a) & set(b))]


def list_size(runs, cond, rows, metric):
    """The smallest test list behind `metric` among these rows' runs; None when a run did not record it."""
    key = VIDEOS.get(metric)
    sizes = [r.get(key) for r in runs if key and r["condition"] == cond and r["row"] in rows]
    return min(sizes) if sizes and None not in sizes else None


def validity(runs, cond):
    """A static-bias condition is valid when its positive control succeeds on the conflicting videos
    (RELIABLE) and its negative control never does: then the set rewards motion and the shortcut is real."""
    pos, neg = (successes(values(runs, cond, row, "conflict_top1"), SUCCESS) for row in CONTROLS)
    if min(pos["n"], neg["n"]) < 2:
        return {"valid": None, "why": "controls not run with >= 2 seeds"}
    return {"valid": pos["k"] >= RELIABLE * pos["n"] and neg["k"] == 0,
            "why": f"positive control ({CONTROLS[0]}) succeeds on the conflicting videos in {pos['k']}/{pos['n']} "
                   f"seeds, negative control ({CONTROLS[1]}) in {neg['k']}/{neg['n']}"}


def decide(pairs, test, floor):
    """(verdict, test used) of one comparison from its per-seed (A, B) values, by RULE: the paired test
    where both rows succeed reliably, else Fisher's exact test on their successes."""
    a, b = (successes([p[i] for p in pairs], SUCCESS) for i in (0, 1))
    if min(a["k"], b["k"]) >= RELIABLE * len(pairs):
        iv = paired_interval([x - y for x, y in pairs], floor)
        return (noninferiority(iv) if test == "noninferiority" else superiority(iv)), "paired"
    return fisher_verdict(a["k"], a["n"], b["k"], b["n"]), "Fisher"


def compare_rows(runs, cond, row_a, row_b, metric, test="superiority"):
    """One comparison of a claim: A against B on `metric` in `cond`, over the seeds both ran (RULE):
    the verdict, the test that gave it, both rows' successes with Fisher's p, the paired interval, and
    the resampled power to reach the same verdict at these seeds and at PLANNED_SEEDS."""
    ran = {r["row"] for r in runs if r["condition"] == cond}
    if row_a not in ran or row_b not in ran:
        return {"verdict": "n/a", "why": "row not run"}
    seeded = paired(runs, cond, row_a, row_b, metric)
    if len(seeded) < 2:
        return {"verdict": "n/a", "why": "needs >= 2 seeds run by both rows"}
    pairs = [(a, b) for _, a, b in seeded]
    floor, videos = 0.0, list_size(runs, cond, [row_a, row_b], metric)
    if videos:                  # accuracies: the binomial SE of a difference of two runs
        floor = math.hypot(binomial_se(statistics.mean(a for a, _ in pairs), videos),
                           binomial_se(statistics.mean(b for _, b in pairs), videos))
    verdict, how = decide(pairs, test, floor)
    target = "reversed" if verdict == "reversed" else "holds"
    power = [resampled_power(pairs, lambda s: decide(s, test, floor)[0], target, n, POWER_TRIALS)
             for n in (len(pairs), PLANNED_SEEDS)]
    ka, kb = (successes([p[i] for p in pairs], SUCCESS)["k"] for i in (0, 1))
    iv = paired_interval([a - b for a, b in pairs], floor)
    note = ("no floor: list sizes not recorded" if metric in VIDEOS and not floor
            else f"sd floor {floor:.2f}" if floor else "")
    return dict(iv, verdict=verdict, test=how, diff=iv["mean"], seeds=[s for s, _, _ in seeded], successes=[ka, kb],
                p=fisher_exact(ka, len(pairs), kb, len(pairs)), target=target, power=power[0],
                power_planned=power[1], planned_seeds=PLANNED_SEEDS, note=note)


def fig3(runs):
    """Per condition, from the FIG3_ROW runs: per-epoch (held-out L_c = val_loss, held-out ENoPR)
    pairs, Spearman's rho per seed and pooled; a note instead where metrics.json has no val_loss."""
    out = {}
    for r in runs:
        if (r["row"], r["condition"]) != (FIG3_ROW, FIG3_CONDITION):
            continue
        f = out.setdefault(r["condition"], {"seeds": [], "note": None})
        pairs = [[l, e] for l, e in zip(r["val_loss"], r["val_enopr"]) if l is not None and e is not None]
        f["seeds"].append({"seed": r["seed"], "pairs": pairs, "rho": spearman(pairs)})
    for cond, f in out.items():
        pooled = [p for s in f["seeds"] for p in s["pairs"]]
        f["pooled_rho"] = spearman(pooled)
        f["rho"] = mean_std([s["rho"] for s in f["seeds"]])
        f["successes"] = successes(values(runs, cond, FIG3_ROW, "top1"), SUCCESS)
        if not pooled:
            f["note"] = "metrics.json holds no val_loss (the held-out L_c), so Fig. 3 cannot be checked"
    return out


def fig3_comparison(f):
    """Claim (e), on a row that learns: the per-seed rho's t interval must lie above 0 (no minimum effect)."""
    if not f or f["note"]:
        return {"verdict": "n/a", "why": f["note"] if f else f"no {FIG3_ROW} runs"}
    won = f["successes"]
    if won["k"] < RELIABLE * won["n"]:
        return {"verdict": "n/a", "why": f"{FIG3_ROW} succeeds in {won['k']}/{won['n']} seeds (top-1 >= "
                                         f"{SUCCESS:g} %): Fig. 3 is about a model that learns"}
    iv = paired_interval([s["rho"] for s in f["seeds"] if s["rho"] is not None])
    if iv is None:
        return {"verdict": "n/a", "why": "needs >= 2 seeds with a rho"}
    return dict(iv, verdict=superiority(iv, min_effect=0.0), diff=iv["mean"])


def dose_response(runs):
    """Per static-bias condition: does the outcome move with the weight on L_p (DOSES: lambda = 0 to
    30)? For conflicting top-1 and for DA's object/background energy ratio, trend_test over every run
    of the dose rows, its verdict and the resampled power to reach it (a trend in the direction seen,
    or a rise where none was seen) at the seeds run and at PLANNED_SEEDS."""
    out = {}
    for cond in BIAS:
        rows = [(row, lam) for row, lam in DOSES if values(runs, cond, row, "top1")]
        if len(rows) < 3:
            continue
        out[cond] = {"doses": [lam for _, lam in rows]}
        for metric in ("conflict_top1", "energy_ratio"):
            groups = [(lam, values(runs, cond, row, metric)) for row, lam in rows]
            t = trend_test(groups)
            if t:
                target = t["verdict"] if t["verdict"] != "no trend" else "rises"
                t.update(target=target, power=trend_power(groups, target, trials=POWER_TRIALS),
                         power_planned=trend_power(groups, target, PLANNED_SEEDS, POWER_TRIALS))
            out[cond][metric] = t
        # descriptive, not a verdict: does a run's conflicting top-1 follow its energy ratio?
        pts = [(r["energy_ratio"], r["conflict_top1"]) for r in runs if r["condition"] == cond
               and r["row"].startswith("DA") and r.get("energy_ratio") is not None]
        out[cond]["ratio_vs_conflict"] = {"rho": spearman(pts), "n": len(pts)}
    return out


def claim_verdict(verdicts):
    """One claim from its comparisons (see RULE)."""
    decided = [v for v in verdicts if v != "n/a"]
    if not decided:
        return "n/a"
    k = verdicts.count("holds")
    if k == len(verdicts):
        return "holds"
    if decided.count("reversed") == len(verdicts):
        return "reversed"
    return f"partly ({k} of {len(verdicts)})" if k else "not shown"


def summarise(runs):
    """condition -> row -> {metric: mean_std} plus the row's seeds and its successes (RULE's endpoints)."""
    groups = {}
    for r in runs:
        groups.setdefault(r["condition"], {}).setdefault(r["row"], []).append(r)
    return {c: {row: dict({m: mean_std([r.get(m) for r in rs]) for m in METRICS}, seeds=sorted(r["seed"] for r in rs),
                          success=successes(values(runs, c, row, success_metric(c)), SUCCESS))
                for row, rs in rows.items()} for c, rows in groups.items()}


def analyse(runs):
    """summary (summarise), the static-bias conditions' validity, fig3 and the claims, from the per-run
    numbers."""
    summary = summarise(runs)
    valid = {c: validity(runs, c) for c in summary if c in BIAS}
    figs, claims = fig3(runs), []
    for c in CLAIMS:
        for cond in [x for x in c["conditions"] if x in summary]:
            if c["metric"] == "fig3":
                comps = [dict(fig3_comparison(figs.get(cond)), what="per-seed Spearman rho(val_loss, val_ENoPR) > 0")]
            elif cond in valid and not valid[cond]["valid"]:
                comps = [{"verdict": "n/a", "why": "condition not valid: " + valid[cond]["why"], "what": f"{A} - {B}"}
                         for A, B in c["pairs"]]
            else:
                comps = [dict(compare_rows(runs, cond, A, B, c["metric"], c.get("test", "superiority")),
                              what=f"{A} - {B}") for A, B in c["pairs"]]
            claims.append({"id": c["id"], "claim": c["claim"], "metric": c["metric"], "condition": cond,
                           "verdict": claim_verdict([x["verdict"] for x in comps]), "comparisons": comps})
    return {"summary": summary, "validity": valid, "fig3": figs, "claims": claims, "dose_response": dose_response(runs)}


# --- the report: markdown tables, claims.png ---------------------------------------------------
def fmt(ms, digits=1, signed=False):
    """mean ± std, '(1 seed)' without a spread, '–' without a value."""
    if not ms or ms["mean"] is None:
        return "–"
    f = f"{'+' if signed else ''}.{digits}f"
    return f"{ms['mean']:{f}} ± {ms['std']:.{digits}f}" if ms["std"] is not None else f"{ms['mean']:{f}} (1 seed)"


def fmt_value(x, digits=1):
    return "–" if x is None else f"{x:.{digits}f}"


def ordered_rows(names):
    """ROWS' order, then any other row names in the order they come."""
    return [n for n in ROWS if n in names] + [n for n in dict.fromkeys(names) if n not in ROWS]


def condition_label(runs, cond):
    """'bias 0.9: rho 0.9, camera jitter; 10 epochs, lr 0.01' from what the runs recorded (args.json;
    the separate row's extra epochs left out), so extra flags show."""
    spec = CONDITIONS.get(cond, {})
    rs = [r for r in runs if r["condition"] == cond and r["row"] != "DA separate"] or \
        [r for r in runs if r["condition"] == cond]
    ep, lr = sorted({r["epochs"] for r in rs}), sorted({r["lr"] for r in rs})
    cam = "" if not spec else ", camera jitter" if spec["jitter"] else ", still camera"
    return (f"{cond}: rho {spec.get('bias', '?')}{cam}; {'/'.join(map(str, ep))} epochs, "
            f"lr {'/'.join(f'{v:g}' for v in lr)}")


def condition_table(runs, an, cond):
    """The markdown table of one condition, with its validity (static bias) or Fig. 3 line."""
    s = an["summary"][cond]
    ns = sorted({v["top1"]["n"] for v in s.values()})
    seeds = f"{ns[0]} seed{'s' * (ns[0] > 1)}" if len(ns) == 1 else (    # rows run with more seeds: named
        f"{ns[0]}-{ns[-1]} seeds; {ns[-1]}: " + ", ".join(r for r in ordered_rows(list(s)) if s[r]["top1"]["n"] == ns[-1]))
    vids = {k: list_size(runs, cond, list(s), k) for k in VIDEOS}
    on = "conflicting top-1" if success_metric(cond) == "conflict_top1" else "top-1"
    lines = [f"**{condition_label(runs, cond)}** (mean ± std over {seeds}; "
             f"{vids['top1'] or '?'} test videos, {vids['aligned_top1'] or '?'} aligned, "
             f"{vids['conflict_top1'] or '?'} conflicting; successes: {on} >= {SUCCESS:g} %, with the median "
             f"and the mean over successes of {on})", "",
             "| row | successes | median | mean of successes | top-1 (%) | aligned top-1 | conflicting top-1 "
             "| flips | energy object/background | DC gain s | ENoPR | mean alpha |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in ordered_rows(list(s)):
        m, w = s[row], s[row]["success"]
        lines.append(f"| {row} | {w['k']}/{w['n']} | {fmt_value(w['median'])} | {fmt_value(w['mean_success'])} | "
                     f"{fmt(m['top1'])} | {fmt(m['aligned_top1'])} | {fmt(m['conflict_top1'])} | "
                     f"{fmt(m['flips'], 2)} | {fmt(m['energy_ratio'], 2)} | "
                     f"{fmt(m['dc_gain'], 3)} | {fmt(m['enopr'], 3)} | {fmt(m['mean_alpha'], 3)} |")
    dr = an.get("dose_response", {}).get(cond)
    for metric, what in (("conflict_top1", "conflicting top-1"), ("energy_ratio", "DA's energy ratio")):
        t = dr and dr.get(metric)
        if t:
            lines += ["", f"Dose-response over lambda = {', '.join(f'{d:g}' for d in dr['doses'])} ({what}, "
                          f"{t['n']} runs): Spearman rho {t['rho']:+.2f}, p = {t['p']:.2g}: **{t['verdict']}**; "
                          f"P({t['target']}) {t['power']:.2f} at the seeds run, {t['power_planned']:.2f} at "
                          f"{PLANNED_SEEDS} per dose"]
    link = dr and dr.get("ratio_vs_conflict")
    if link and link["rho"] is not None:
        lines += ["", f"Conflicting top-1 against DA's energy ratio over every DA run here ({link['n']} runs, "
                      f"descriptive): Spearman rho {link['rho']:+.2f}"]
    if cond in an["validity"]:
        v = an["validity"][cond]
        state = {True: "valid", False: "NOT valid", None: "undecided"}[v["valid"]]
        lines += ["", f"Condition {state}: {v['why']}."]
    f = an["fig3"].get(cond)
    if f:
        per_seed = ", ".join(f"seed {x['seed']}: " + ("–" if x["rho"] is None else f"{x['rho']:+.2f}")
                             for x in f["seeds"])
        pooled = "–" if f["pooled_rho"] is None else f"{f['pooled_rho']:+.2f}"
        lines += ["", f"Fig. 3 ({FIG3_ROW}, per-epoch held-out L_c vs ENoPR): "
                      + (f["note"] if f["note"] else f"Spearman rho {per_seed}; pooled {pooled}")]
    return lines + [""]


def comparison_cell(x):
    """One comparison's verdict, the test that gave it, its figures and its resampled power."""
    if "diff" not in x:
        return f"n/a ({x['why']})"
    if "test" not in x:                                    # claim (e): a t interval of rho
        return f"{x['verdict']}: {x['diff']:+.2f} [{x['lo']:+.2f}, {x['hi']:+.2f}], {x['n']} seeds"
    counts = f"{x['successes'][0]}/{x['n']} vs {x['successes'][1]}/{x['n']} successes"
    figures = (f"{x['diff']:+.2f} [{x['lo']:+.2f}, {x['hi']:+.2f}], {x['n']} seeds"
               + (f", {x['note']}" if x.get("note") else "") + f"; {counts}") if x["test"] == "paired" else \
        f"{counts}, p = {x['p']:.2g} (mean difference {x['diff']:+.1f})"
    return (f"{x['verdict']} ({x['test']}): {figures}; P({x['target']}) {x['power']:.2f} at {x['n']} seeds, "
            f"{x['power_planned']:.2f} at {x['planned_seeds']}")


def records_line(result):
    """The machine and the sets the runs were made on, where the result records them."""
    m, sets = result.get("machine"), result.get("sets")
    if not m:
        return []
    runs = f"{m['jobs']} runs at a time" if m.get("jobs") else f"OMP_NUM_THREADS {m['omp_num_threads'] or 'unset'}"
    return ["", f"Made with torch {m['torch']}, {m['threads']} thread per run ({runs}), {m['cpu']}, "
                f"{m.get('cores', '?')} cores" + (f", commit {m['commit'][:10]}" if m.get("commit") else "")
                + "; sets (SHA-256): "
                + ", ".join(f"{c} {h[:12]}" for c, h in (sets or {}).items())]


def format_tables(result, an):
    """The report's markdown from `result` and its analysis `an`: each table's conditions, then the
    claims' verdicts with their comparisons, the runs' time and what they were made on."""
    runs, lines = result["runs"], []
    for t, spec in TABLES.items():
        conds = [c for c in spec["conditions"] if c in an["summary"]]
        if conds:
            lines += [f"### {t} table", ""]
            for cond in conds:
                lines += condition_table(runs, an, cond)
    lines += [f"Verdicts. {RULE}", "", "| claim | condition | verdict |", "|---|---|---|"]
    for c in an["claims"]:
        lines.append(f"| ({c['id']}) {c['claim']} | {c['condition']} | **{c['verdict']}** |")
        lines += [f"| &nbsp;&nbsp; {x['what']} | | {comparison_cell(x)} |" for x in c["comparisons"]]
    if "total_s" in result:
        cmd = result.get("command", "")
        testing = sum(r.get("eval_s", 0.0) for r in runs)     # a separate evaluate.py call, in older files
        lines += ["", f"{len(runs)} runs, {result['total_s'] / 60:.1f} min in all "
                      f"(train.py {sum(r['train_s'] for r in runs) / 60:.1f} min"
                      + (f", evaluate.py {testing / 60:.1f} min): " if testing else "): ")
                      + "; ".join(f"`{c}`" for c in (cmd if isinstance(cmd, list) else [cmd]))]
    return "\n".join(lines + records_line(result))


def plot_claims(result, path, dpi=100):
    """claims.png: per condition, aligned and conflicting top-1 per row (mean, error bar = std over
    seeds); then, where the runs have them, the mechanism (conflicting top-1 against the final DC gain
    s of DA, one point per static-bias run coloured by row) and the Fig. 3 scatter of held-out L_c vs
    ENoPR per epoch."""
    plt = visualize.plt
    runs = result["runs"]
    an = {"summary": summarise(runs), "fig3": fig3(runs)}    # what the plot shows: no verdicts
    conds = [c for spec in TABLES.values() for c in spec["conditions"] if c in an["summary"]]
    extras = [panel for panel, has in (
        (lambda ax: plot_mechanism(ax, runs),
         any(r["condition"] in BIAS and r.get("energy_ratio") is not None for r in runs)),
        (lambda ax: plot_fig3(ax, an), any(s["pairs"] for f in an["fig3"].values() for s in f["seeds"])))
        if has]
    n_rows = max(len(v) for v in an["summary"].values())
    cols = min(3, len(conds) + len(extras))
    lines = -(-(len(conds) + len(extras)) // cols)
    fig, axes = plt.subplots(lines, cols, figsize=(6.5 * cols, (2.5 + 0.4 * n_rows) * lines), dpi=dpi, squeeze=False)
    axes = axes.ravel()
    for ax, cond in zip(axes, conds):
        rows = ordered_rows(list(an["summary"][cond]))
        y = list(range(len(rows)))
        for off, key, label, color in ((-0.15, "aligned_top1", "aligned", "C0"),
                                       (0.15, "conflict_top1", "conflicting", "C3")):
            ms = [an["summary"][cond][r][key] for r in rows]
            ax.errorbar([m["mean"] if m["mean"] is not None else float("nan") for m in ms], [v + off for v in y],
                        xerr=[m["std"] or 0 for m in ms], fmt="o", color=color, label=label, capsize=3)
        ax.axvline(100.0 / SET["classes"], color="grey", lw=0.8, ls=":")
        ax.set_yticks(y)
        ax.set_yticklabels(rows)
        ax.invert_yaxis()
        ax.set(xlabel="top-1 (%)", xlim=(-2, 102), title=condition_label(runs, cond))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax, panel in zip(axes[len(conds):], extras):
        panel(ax)
    for ax in axes[len(conds) + len(extras):]:
        ax.axis("off")
    fig.tight_layout()
    visualize.save(fig, path, dpi)


def plot_mechanism(ax, runs):
    """Conflicting top-1 against the representation's energy ratio on object and background pixels
    (experiments/scene.py), one point per static-bias run of a DA row or the RGB difference, by row."""
    has = lambda r: r["condition"] in BIAS and r.get("energy_ratio") is not None
    for i, row in enumerate(ordered_rows([r["row"] for r in runs if has(r)])):
        pts = [(r["energy_ratio"], r["conflict_top1"]) for r in runs if has(r) and r["row"] == row]
        ax.scatter(*zip(*pts), color=f"C{i % 10}", marker="os^v"[i // 10 % 4], label=row)
    ax.set_xscale("log")
    ax.legend(fontsize=7)
    ax.axhline(100.0 / SET["classes"], color="grey", lw=0.8, ls=":")
    ax.set(xlabel="energy per pixel, object / background (log)", ylabel="conflicting top-1 (%)",
           title=f"Where the representation's energy is ({', '.join(BIAS)})")
    ax.grid(alpha=0.3)


def plot_fig3(ax, an):
    for k, cond in enumerate(an["fig3"]):
        for s in an["fig3"][cond]["seeds"]:
            if s["pairs"]:
                x, yv = zip(*s["pairs"])
                rho = "–" if s["rho"] is None else f"{s['rho']:+.2f}"
                ax.plot(x, yv, "os^v"[k % 4] + "-", lw=0.8, label=f"{cond}, seed {s['seed']}: rho = {rho}")
    ax.legend(fontsize=8)
    ax.set(xlabel="held-out L_c (val_loss, cross-entropy)", ylabel="held-out L_p (val_enopr)",
           title=f"Fig. 3: {FIG3_ROW}, one point per epoch")
    ax.grid(alpha=0.3)


def merge_results(paths):
    """One result from one or more claims.json files: their runs (a later file's run replaces an
    earlier one of the same condition, row and seed), summed wall time and every command."""
    merged, runs, commands, total = {}, {}, [], 0.0
    for path in paths:
        result = read_json(path, "bench.py claims --table")
        if not isinstance(result, dict) or not result.get("runs"):
            raise SystemExit(f"bench.py claims --table: {path} holds no runs (expected bench.py claims' JSON)")
        merged.update({k: v for k, v in result.items() if k not in ("runs", "command", "total_s")})
        runs.update({(r["condition"], r["row"], r["seed"]): r for r in result["runs"]})
        cmd = result.get("command", [])
        commands += cmd if isinstance(cmd, list) else [cmd]
        total += result.get("total_s", 0.0)
    return dict(merged, runs=list(runs.values()), command=commands[0] if len(commands) == 1 else commands,
                total_s=total)


def run_jobs(a, jobs):
    """Run (or reuse) every (condition, row, seed) of `jobs`, --jobs of them at once, a progress line
    each as it ends with an ETA from the runs trained so far; returns their records in `jobs`' order."""
    t_start, fresh_s, fresh, done = time.time(), 0.0, 0, {}
    print(f"bench.py claims: {len(jobs)} runs in {a.out_dir}, {a.jobs} at a time", flush=True)
    for cond in dict.fromkeys(cond for cond, _, _ in jobs):
        condition_set(a, cond)               # each set written once, before runs race for it
    torch.set_num_threads(1)                 # the mechanism's forward passes run beside the runs
    with concurrent.futures.ThreadPoolExecutor(a.jobs) as pool:
        started = {pool.submit(run_one, a, *job): job for job in jobs}
        for future in concurrent.futures.as_completed(started):
            cond, row, seed = started[future]
            rec = done[(cond, row, seed)] = future.result()
            if not rec["reused"]:
                fresh_s, fresh = fresh_s + rec["train_s"], fresh + 1
            left = len(jobs) - len(done)
            eta = f"ETA {fmt_time(fresh_s / fresh * left / a.jobs)}" if fresh and left else ""
            print(f"  [{len(done)}/{len(jobs)}] {cond:9s} {row:15s} seed {seed}: top-1 {rec['top1']:5.1f} % | "
                  f"aligned {rec['aligned_top1']:5.1f} % | conflicting {rec['conflict_top1']:5.1f} % | "
                  + ("reused" if rec["reused"] else f"{rec['train_s']:.0f} s") + f" | {eta}", flush=True)
    runs = [done[j] for j in jobs]
    for rec in runs:
        rec.pop("reused")
    return runs, time.time() - t_start


def dry_run(a, jobs):
    """--dry-run: the runs the command would do and the time they would take on this machine, from one
    timed run: the first run still to do of a jointly trained DA row, as most rows are (else the first),
    trained for real and kept, so the command reuses it. Each other run is that run's time per epoch
    times its epochs; --jobs of them run at once, each on one thread, so the total is their sum / --jobs.
    Rows differ in cost (RGB less than DA, MGDA more than a constant lambda): an estimate, not a promise."""
    todo = [j for j in jobs if run_record(a, *j)[2] is None]
    typical = [j for j in todo if "da" in ROWS[j[1]] and j[1] != FIG3_ROW and "separate" not in ROWS[j[1]]]
    timed, estimate = (typical or todo or [None])[0], {}
    if timed:
        print(f"bench.py claims --dry-run: timing one run ({', '.join(map(str, timed))}); the command will reuse it",
              flush=True)
        per_epoch = run_one(a, *timed)["train_s"] / run_epochs(a, timed[1])
        estimate = {j: per_epoch * run_epochs(a, j[1]) for j in todo if j != timed}
    for j in jobs:
        state = "timed now" if j == timed else f"~{fmt_time(estimate[j])}" if j in estimate else "done: reused"
        print(f"  {j[0]:14s} {j[1]:15s} seed {j[2]}: {run_epochs(a, j[1])} epochs, {state}")
    total = sum(estimate.values()) / a.jobs
    print(f"{len(jobs)} runs, {len(jobs) - len(todo)} done, {len(estimate)} still to do after the timed one, "
          f"{a.jobs} at a time: about {fmt_time(total)} on this machine (h:mm:ss; writing the sets and "
          f"{FIG3_ROW}'s validation after every epoch not counted)")
    return {"runs": [dict(zip(("condition", "row", "seed"), j), estimate_s=estimate.get(j)) for j in jobs],
            "timed": timed, "estimate_s": total}


def run_claims(a):
    """Train every selected condition x row x seed (see the module docstring), then write claims.json,
    claims.png and print the tables. With --table, only the last part, from an existing claims.json;
    with --dry-run, the runs and their estimated time instead."""
    if a.table:
        result = merge_results(a.table)
        an = analyse(result["runs"])
        if len(a.table) > 1:          # several runs of `claims` (other rows, other conditions): one report
            save_result(result, a.out, an)
        print(format_tables(result, an))
        return result
    if min(a.seeds, a.set_train, a.set_crossed, a.jobs) < 1:
        raise SystemExit("bench.py claims: --seeds, --set-train, --set-crossed and --jobs must be >= 1")
    a.out_dir = a.out_dir or os.path.splitext(a.out)[0] + "_runs"
    jobs = [(cond, row, seed) for cond, row in select_runs(a) for seed in range(a.seeds)]
    if a.dry_run:
        return dry_run(a, jobs)
    runs, total_s = run_jobs(a, jobs)
    conds = list(dict.fromkeys(cond for cond, _, _ in jobs))
    result = {"command": a.command, "rule": RULE, "budget": effective_budget(a.train_args), "seeds": a.seeds,
              "train_args": a.train_args, "set": dict(SET, bias_train=a.set_train, crossed=a.set_crossed),
              "conditions": CONDITIONS, "machine": machine(a.jobs),
              "sets": {cond: set_sha256(set_root(a, cond)) for cond in conds}, "total_s": total_s, "runs": runs}
    an = analyse(runs)
    png = save_result(result, a.out, an)
    print("\n" + format_tables(result, an) + f"\n\nwrote {a.out}, {png}")
    return result


def save_result(result, out, an):
    """Add the analysis `an` to `result`, write it to `out` and its plot beside it; returns the plot's path."""
    result.update(an, rule=RULE)
    atomic_json(result, out)
    png = os.path.splitext(out)[0] + ".png"
    plot_claims(result, png)
    return png


def build_parser():
    p = argparse.ArgumentParser(prog="bench.py claims", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="claims.json", help="JSON output (default claims.json), the PNG beside it")
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS,
                   help=f"seeds 0..N-1 per row and condition (default {DEFAULT_SEEDS})")
    p.add_argument("--tables", nargs="+", default=None, choices=list(TABLES),
                   help="; ".join(f"{t}: {', '.join(v['conditions'])}" for t, v in TABLES.items()) + " (default: both)")
    p.add_argument("--conditions", nargs="+", default=None, choices=list(CONDITIONS),
                   help="only these conditions of the tables")
    p.add_argument("--rows", action="append", default=None, metavar="NAME",
                   help="only these rows (exact name, else a substring; repeatable). Rows: " + ", ".join(ROWS))
    p.add_argument("--set-train", type=int, default=SET["bias_train"],
                   help=f"training videos per class of each condition's set (default {SET['bias_train']})")
    p.add_argument("--set-crossed", type=int, default=SET["crossed"],
                   help=f"test videos per class and background (default {SET['crossed']}: "
                        f"{SET['classes'] ** 2 * SET['crossed']} test videos)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="runs at once, each on one thread (default: the CPU cores, here %(default)s)")
    p.add_argument("--out-dir", default=None,
                   help="where the runs go (default: OUT without .json + _runs); rerunning continues it")
    p.add_argument("--dry-run", action="store_true",
                   help="print the runs the command would do and their time on this machine, estimated from one "
                        "run trained now (kept: the command reuses it); writes no claims.json")
    p.add_argument("--table", nargs="+", default=None, metavar="CLAIMS.json",
                   help="print the tables and verdicts of an existing claims.json; trains nothing. "
                        "Several files (runs of other rows or conditions) are merged and written to --out")
    return p


def main(argv=None):
    """python bench.py claims [flags] [-- train.py flags]: everything after a bare `--` goes to train.py
    unchanged, after the row's and the budget's flags (so it can override them, e.g. -- --frames 8)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args = build_parser().parse_args(argv[:cut])
    args.train_args = argv[cut + 1:]
    args.command = "python bench.py " + shlex.join(["claims", *argv])
    return run_claims(args)
