"""CUDA checks: run with `python -m pytest -m gpu -s` (the `-s` shows bench.py's table) on a machine
with a GPU. Without CUDA every test here is skipped; the default `python -m pytest` deselects them.

Designed for under 5 minutes on one GPU (small models; the bench row uses bench.py's default
sizes, TSM-R50 224^2 included):
  * DA-TSM (small) forward and backward on CUDA equal the CPU's, float32 with TF32 off;
  * a uint8 clip (the loader's items) normalised by the model on CUDA equals data.normalize's on the CPU;
  * loader workers' batches arrive pinned and equal to the items;
  * one bf16 and one fp16 training step through train.py's own step, close to the float32 step;
  * torchrun with 2 ranks, also on one GPU (both ranks on it, over Gloo): all-reduces of CUDA and CPU
    tensors and Algorithm 1 over the ranks equal to one process (NCCL and train.py's mixed group
    cpu:gloo,cuda:nccl with >= 2 GPUs), and train.py itself with 2 ranks;
  * bench.py's rows on CUDA (PWTP's share of the step, MGDA vs constant, DA vs flow, loader vs
    step), its table printed.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

import backbones
import bench
import data
import mgda
from experiments import speed
from support import synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUDA = torch.cuda.is_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")]
GPUS = torch.cuda.device_count() if CUDA else 0

# Tolerance of the CUDA-vs-CPU check (ours): float32 with TF32 off, so the two differ only in the
# order of their float32 sums (cuDNN's convolution algorithms, reduction trees). We allow, per
# tensor, a max abs difference of RTOL_OF_MAX times the tensor's largest magnitude, plus ATOL.
RTOL_OF_MAX, ATOL = 1e-4, 1e-6


@pytest.fixture
def no_tf32():
    """TF32 off for matmuls and cuDNN convolutions (it rounds float32 inputs to 10 mantissa bits)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def assert_near(cuda_t, cpu_t, name):
    diff = (cuda_t.detach().cpu().double() - cpu_t.detach().double()).abs().max().item()
    bound = RTOL_OF_MAX * cpu_t.detach().abs().max().item() + ATOL
    assert diff <= bound, f"{name}: CUDA differs from CPU by {diff:.3g} (allowed {bound:.3g})"


def forward_backward(model, clip, labels):
    """Logits, DA, ENoPR and the gradient of L_c + L_p on every parameter."""
    model.zero_grad(set_to_none=True)
    out = model(clip)
    loss = F.cross_entropy(out.logits, labels) + out.pwtp.enopr.mean()
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return out, grads


def test_uint8_clip_is_normalised_on_cuda_as_on_the_cpu():
    """The loader's items are uint8; DAModel.forward normalises them on its device. What PWTP receives
    on CUDA is data.normalize's result on the CPU, to 1e-6."""
    model = backbones.build_model("tsm", 5, segments=4, frames=4, depth=18, small=True, crop_size=64).cuda().eval()
    clip = torch.randint(0, 256, (2, 16, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    seen = []
    model.pwtp.register_forward_pre_hook(lambda m, args: seen.append(args[0].cpu()))
    with torch.no_grad():
        model(clip.cuda())
    assert (seen[0] - data.normalize(clip).view(8, 4, 3, 64, 64)).abs().max() <= 1e-6


def test_worker_batches_arrive_pinned_and_equal_the_items(tmp_path):
    """Loader workers hand batches over through shared memory (support/loading.py); with CUDA the parent
    copies each into pinned memory, so the host-to-device copy can run asynchronously. The pixels that
    reach the GPU are the items'."""
    root = str(tmp_path / "set")
    synthetic.write_synthetic(root, classes=2, videos_per_class=4, size=24, frames=10, seed=3)
    ds = data.build_dataset("synthetic", root, segments=2, frames=2, crop_size=16)
    order = [i % len(ds) for i in range(7)]
    for k, (clip, label) in enumerate(data.data_loader(ds, 3, order, 2, ds.item_shape)):
        assert clip.is_pinned() and label.tolist() == [ds[i][1] for i in order[3 * k:3 * k + 3]]
        want = torch.stack([ds[i][0] for i in order[3 * k:3 * k + 3]])
        assert torch.equal(clip.cuda(non_blocking=True).cpu(), want)


def test_da_tsm_forward_and_backward_on_cuda_equal_the_cpu(no_tf32):
    torch.manual_seed(0)
    cpu_model = backbones.build_model("tsm", 5, segments=4, frames=4, depth=18, small=True, crop_size=64,
                                      dropout=0.0)
    cuda_model = backbones.build_model("tsm", 5, segments=4, frames=4, depth=18, small=True, crop_size=64,
                                       dropout=0.0)
    cuda_model.load_state_dict(cpu_model.state_dict())
    cuda_model.cuda()
    g = torch.Generator().manual_seed(1)
    clip, labels = torch.randn(2, 16, 3, 64, 64, generator=g), torch.randint(0, 5, (2,), generator=g)
    out_cpu, g_cpu = forward_backward(cpu_model, clip, labels)            # train mode: BN batch statistics
    out_gpu, g_gpu = forward_backward(cuda_model, clip.cuda(), labels.cuda())
    for name in ("logits",):
        assert_near(getattr(out_gpu, name), getattr(out_cpu, name), name)
    for name in ("da", "enopr", "A"):
        assert_near(getattr(out_gpu.pwtp, name), getattr(out_cpu.pwtp, name), f"pwtp.{name}")
    assert set(g_gpu) == set(g_cpu) and any(n.startswith("pwtp.") for n in g_cpu)
    for name in g_cpu:
        assert_near(g_gpu[name], g_cpu[name], f"grad {name}")


def training_step_losses(amp, steps=3):
    """L_c of `steps` train.py steps (train.train_step, run built as experiments/speed.py builds it) on
    one fixed batch, from the same initial weights; and the run, for its scaler and parameters."""
    import train
    args = speed.train_args(["--joint", "mgda", "--mgda-normalize", "none", "--segments", 4, "--frames", 4,
                             "--crop-size", 64, "--depth", 18, "--small", "--batch-size", 4])
    torch.manual_seed(0)
    run = speed.timing_run(args, torch.device("cuda"), amp)
    g = torch.Generator().manual_seed(2)
    clip, labels = torch.randn(4, 16, 3, 64, 64, generator=g), torch.randint(0, 10, (4,), generator=g)
    results = [train.train_step(run, clip, labels, step) for step in range(steps)]
    return results, run


@pytest.mark.parametrize("amp", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_mixed_precision_training_step(amp, no_tf32):
    ref, _ = training_step_losses(None, steps=1)
    results, run = training_step_losses(amp)
    first = results[0]
    # The first step sees the same weights and batch as the float32 step: autocast changes only the
    # rounding of the forward pass (bf16 keeps 8 mantissa bits, fp16 11), not the loss it computes.
    for key in ("loss_c", "loss_p"):
        assert abs(first.info[key] - ref[0].info[key]) <= 0.05 * ref[0].info[key], (key, first.info, ref[0].info)
    for r in results:
        assert torch.isfinite(torch.tensor([r.info["loss_c"], r.info["loss_p"]])).all()
        assert 0.0 <= r.info["alpha"] <= 1.0                              # Algorithm 1 ran under autocast
    assert run.scaler.is_enabled() == (amp == torch.float16)             # fp16 alone needs the loss scale
    if amp == torch.float16:
        assert 0 < run.scaler.get_scale() < float("inf")
    assert all(torch.isfinite(p).all() for p in run.model.parameters())
    assert all(p.dtype == torch.float32 for p in run.model.parameters())  # the weights stay float32


# ---------------------------------------------------------------------------------------------
# torchrun: two ranks, so that every all-reduce path runs, also on a machine with one GPU
# ---------------------------------------------------------------------------------------------
# With one GPU torchrun's world would be 1 and nothing distributed would run. So: always 2 ranks. With
# >= 2 GPUs each rank has its own, over NCCL and over train.py's mixed group (cpu:gloo,cuda:nccl); with
# one GPU both ranks share it, and the CUDA tensors go through Gloo (NCCL refuses two ranks on one
# device; Gloo reduces CUDA tensors through host memory): the same collectives, on the same tensors.
RANKS = 2
BACKENDS = ["nccl", "cpu:gloo,cuda:nccl"] if GPUS >= 2 else ["gloo"]

# Tolerances of "2 ranks = 1 process on the whole batch" (ours), float32 with TF32 off: each rank's
# gradients are means over its half of the batch, averaged over the ranks, against one mean over the
# whole batch: the same sums in another order, so ~1e-7 relative per element; 1e-4 (grads) leaves room
# for cuDNN choosing other algorithms for the two batch sizes. alpha is Eq. 12 on inner products of those
# gradients: 1e-5. The all-reduced integers and sums of small integers are exact.
GRAD_RTOL, GRAD_ATOL, ALPHA_RTOL = 1e-4, 1e-6, 1e-5

WORKER = textwrap.dedent(f'''
    """One torchrun rank: python worker.py BACKEND OUT. Rank r runs on GPU r mod the GPUs."""
    import json, os, sys
    import torch, torch.distributed as dist, torch.nn.functional as F
    import backbones, mgda
    from support.system import distributed

    backend, out = sys.argv[1], sys.argv[2]
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count())
    torch.cuda.set_device(dev)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    dist.init_process_group(backend)
    assert distributed() and world == 2, world
    total = world * (world + 1) / 2                                    # sum of rank + 1 over the ranks
    t = torch.full((3,), rank + 1.0, device=dev)
    dist.all_reduce(t)                                                 # a CUDA tensor
    assert t.tolist() == [total] * 3, t
    if backend != "nccl":                                              # a CPU tensor, through Gloo
        c = torch.full((2,), rank + 1.0, dtype=torch.float64)
        dist.all_reduce(c)
        assert c.tolist() == [total] * 2, c
    # Algorithm 1 over the ranks: each rank holds 2 of the 2*world clips; JointTraining averages g_c,
    # g_p and the backbone's gradient over the ranks BEFORE alpha (support.grads.reduce_over_ranks), so
    # alpha and every .grad equal one process on the whole batch. Eval mode: BatchNorm uses its running
    # statistics, so no clip's output depends on its batch-mates.
    torch.manual_seed(0)
    model = backbones.build_model("tsm", 3, segments=2, frames=4, depth=18, small=True, crop_size=32,
                                  dropout=0.0).to(dev).eval()
    g = torch.Generator().manual_seed(1)
    clip = torch.randn(2 * world, 8, 3, 32, 32, generator=g).to(dev)
    labels = torch.randint(0, 3, (2 * world,), generator=g).to(dev)

    def step(x, y):
        model.zero_grad(set_to_none=True)
        o = model(x)
        jt = mgda.JointTraining(model.shared_parameters(), model.recognition_parameters(), "mgda")
        info = jt.backward(F.cross_entropy(o.logits, y), o.pwtp.enopr.mean(), 0)
        return info["alpha"], [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]

    alpha, grads = step(clip[2 * rank:2 * rank + 2], labels[2 * rank:2 * rank + 2])
    dist.destroy_process_group()
    assert not distributed()
    whole_alpha, whole = step(clip, labels)                            # no process group: one process
    assert abs(alpha - whole_alpha) <= {ALPHA_RTOL} * max(1.0, abs(whole_alpha)), (alpha, whole_alpha)
    assert len(grads) == len(whole) > 0
    for a, b in zip(grads, whole):
        torch.testing.assert_close(a, b, rtol={GRAD_RTOL}, atol={GRAD_ATOL})
    with open(os.path.join(out, f"rank{{rank}}.json"), "w") as f:
        json.dump({{"rank": rank, "world": world, "alpha": alpha, "device": str(dev)}}, f)
''')

# train.py itself under torchrun. On one GPU both ranks are given cuda:0 (--device), and the process
# group train.py asks for (cpu:gloo,cuda:nccl) is swapped for Gloo, as in WORKER; nothing else changes.
LAUNCHER = textwrap.dedent('''
    import runpy, sys
    import torch, torch.distributed as dist
    if torch.cuda.device_count() < 2:                                  # two ranks share one GPU: Gloo only
        init = dist.init_process_group
        dist.init_process_group = lambda backend=None, **kw: init(backend="gloo", **kw)
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
''')


def torchrun(args, nproc, timeout=240):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="2")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}"
    return p


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_ranks_all_reduce_and_run_algorithm_1_as_one_process(tmp_path, backend):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    torchrun([str(script), backend, str(tmp_path)], RANKS)
    done = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(RANKS)]
    assert [d["world"] for d in done] == [RANKS] * RANKS
    assert len({d["alpha"] for d in done}) == 1                          # the same alpha on both ranks
    assert len({d["device"] for d in done}) == min(RANKS, GPUS)          # one GPU each, or both on one


def test_train_py_with_two_ranks_on_cuda(synth_root, tmp_path):
    # train.py: its all-reduces of g_c, g_p and the backbone's gradient, its buffer broadcast, the rank
    # sums of the loss log and the gathered validation, with two ranks.
    run_dir, launcher = tmp_path / "run", tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    p = torchrun([str(launcher), os.path.join(ROOT, "train.py"), "--dataset", "synthetic", "--data-root", synth_root,
                  "--epochs", "1", "--max-steps", "2", "--segments", "2", "--frames", "4", "--crop-size", "32",
                  "--batch-size", "2", "--workers", "0", "--joint", "mgda", "--out", str(run_dir),
                  "--device", "cuda" if GPUS >= 2 else "cuda:0"], RANKS)
    assert f"| {RANKS} x cuda" in p.stdout, p.stdout[-2000:]                   # rank 0's line: 2 processes
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics and (run_dir / "last.pt").exists()
    assert json.loads((run_dir / "args.json").read_text())["joint"] == "mgda"


# ---------------------------------------------------------------------------------------------
# bench.py's rows on CUDA
# ---------------------------------------------------------------------------------------------
def test_bench_rows_on_cuda(tmp_path, capsys):
    out = tmp_path / "bench.json"
    # Default sizes (a 112^2 TSM-R18 small row and the paper's TSM-R50 8x6 224^2 row); the synthetic
    # set for the loader row is written into tmp_path first (~640 small videos, seconds).
    res = bench.main(["--device", "cuda", "--no-raft", "--out", str(out), "--data-root", str(tmp_path / "synth")])
    with capsys.disabled():
        print("\n" + capsys.readouterr().out)                          # bench.py's table, on the terminal
    assert res["device"].startswith("cuda")
    assert len(res["pwtp_vs_backbone"]) == 2 and len(res["mgda_vs_constant"]) == 2
    for row in res["pwtp_vs_backbone"] + res["mgda_vs_constant"]:
        assert row["ratio"] > 0
    assert res["loader_vs_step"]["loader_clips_per_s"] > 0 and res["loader_vs_step"]["step_clips_per_s"] > 0
    assert set(res["goals"]) >= {"pwtp_vs_backbone", "mgda_vs_constant", "loader_vs_step"}
    assert json.loads(out.read_text())["device"] == res["device"]
