"""Two choices that keep Table 5's rows comparable: --joint separate's backbone phase gets its own
warm-up and cosine (the schedule restarts where PWTP is frozen), and --clip-grad clips PWTP and
the backbone + head apart, so a large lambda's g_p cannot shrink the backbone's step. Tiny models,
built without data, one train_step each."""
import math

import pytest
import torch

import train

# A narrow TSM-R18 on 2 segments of 4 frames at 32x32, built from the flags as train.py does.
FLAGS = ["--dataset", "ucf101", "--backbone", "tsm", "--depth", "18", "--small", "--segments", "2", "--frames", "4",
         "--crop-size", "32", "--batch-size", "2", "--dropout", "0", "--out", "unused"]


def make_run(*flags, steps_per_epoch=10):
    args = train.resolve_defaults(train.build_parser().parse_args(FLAGS + list(flags)), 1, "none")
    torch.manual_seed(0)
    model = train.build_model(args, num_classes=3)
    return train.make_run(args, model, steps_per_epoch, torch.device("cpu"), 0, 1, lambda *a: None)


def step_grads(run):
    """One train_step on a fixed random batch; the gradients it applied, (theta_p, theta_c)."""
    torch.manual_seed(1)
    clip, labels = torch.randn(2, 8, 3, 32, 32), torch.tensor([0, 2])
    train.train_step(run, clip, labels, 0)
    return [[p.grad.clone() for p in theta if p.grad is not None] for theta in (run.joint.theta_p, run.joint.theta_c)]


def norm(grads):
    return torch.stack([g.norm() for g in grads]).norm().item()


# --- the schedule -----------------------------------------------------------------------------
def test_one_phase_schedule_is_unchanged():
    def before(step, warmup, total):      # the schedule as it was, for one phase
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    for warmup, total in ((4, 14), (0, 10), (7, 100), (5, 10)):
        assert [train.warmup_cosine(s, warmup, total) for s in range(total + 1)] == \
            [before(s, warmup, total) for s in range(total + 1)]


def test_separate_schedule_restarts_at_the_phase_boundary():
    f = lambda step: train.warmup_cosine(step, warmup=4, total=100, restart=40)
    warm = [0.25, 0.5, 0.75, 1.0]
    assert [f(s) for s in range(4)] == pytest.approx(warm)
    assert [f(40 + s) for s in range(4)] == pytest.approx(warm)       # phase 2 warms up afresh
    assert f(44) == pytest.approx(1.0)
    assert f(39) < 0.01 and f(99) < 0.01                                # each cosine decays to ~0 at its end
    for lo, hi in ((3, 40), (43, 100)):                                 # and only decreases after its warm-up
        values = [f(s) for s in range(lo, hi)]
        assert all(a >= b for a, b in zip(values, values[1:]))
    # each phase is the one-phase schedule over its own length
    assert [f(s) for s in range(40)] == [train.warmup_cosine(s, 4, 40) for s in range(40)]
    assert [f(40 + s) for s in range(60)] == [train.warmup_cosine(s, 4, 60) for s in range(60)]


def test_a_phase_warms_up_for_at_most_half_of_it():
    f = lambda step: train.warmup_cosine(step, warmup=10, total=30, restart=6)
    assert [f(s) for s in range(3)] == pytest.approx([1 / 3, 2 / 3, 1.0])   # phase 1: 6 steps, warm-up 3
    assert f(6) == pytest.approx(0.1) and f(15) == pytest.approx(1.0)      # phase 2: 24 steps, warm-up 10


def test_make_run_restarts_only_for_separate_and_resumes_exactly():
    flags = ("--joint", "separate", "--epochs", "4", "--warmup-epochs", "1", "--separate-epochs", "1")
    run = make_run(*flags)               # 40 steps, 10 of PWTP alone; a warm-up of 10 asked, 5 in phase 1
    f = run.scheduler.lr_lambdas[0]
    assert run.joint.separate_steps == 10
    last = lambda n: 0.5 * (1 + math.cos(math.pi * (n - 1) / n))       # a cosine's last step of n
    assert f(0) == pytest.approx(1 / 5) and f(4) == pytest.approx(1.0) and f(9) == pytest.approx(last(5))
    assert f(10) == pytest.approx(1 / 10) and f(19) == pytest.approx(1.0) and f(39) == pytest.approx(last(20))
    for other in (("--joint", "constant"), ("--joint", "separate", "--input", "rgb")):   # one phase
        g = make_run(*flags, *other).scheduler.lr_lambdas[0]
        assert [g(s) for s in range(40)] == [train.warmup_cosine(s, 10, 40) for s in range(40)]
    for _ in range(13):                  # into phase 2, then resumed from the scheduler's state
        run.optimizer.step()
        run.scheduler.step()
    resumed = make_run(*flags)
    resumed.optimizer.load_state_dict(run.optimizer.state_dict())
    resumed.scheduler.load_state_dict(run.scheduler.state_dict())
    for _ in range(5):
        assert resumed.scheduler.get_last_lr() == run.scheduler.get_last_lr()
        for r in (run, resumed):
            r.optimizer.step()
            r.scheduler.step()


# --- clipping per parameter group -------------------------------------------------------------
def test_a_large_lambda_does_not_shrink_the_backbone_step():
    small_p, small_c = step_grads(make_run("--joint", "constant", "--lam", "0.001", "--clip-grad", "0"))
    big_p, big_c = step_grads(make_run("--joint", "constant", "--lam", "10000", "--clip-grad", "0"))
    assert all(torch.equal(a, b) for a, b in zip(small_c, big_c))      # L_p does not reach theta_c
    clip = 2 * norm(small_c)             # the backbone under the clip, lambda g_p far over it
    assert norm(big_p) > 10 * clip
    old = [torch.nn.Parameter(torch.empty_like(g)) for g in big_p + big_c]   # the former clip, over all:
    for p, g in zip(old, big_p + big_c):
        p.grad = g.clone()
    torch.nn.utils.clip_grad_norm_(old, clip)
    assert norm([p.grad for p in old[len(big_p):]]) < norm(big_c) / 5   # it shrank the backbone's step
    p_small, c_small = step_grads(make_run("--joint", "constant", "--lam", "0.001", "--clip-grad", str(clip)))
    p_big, c_big = step_grads(make_run("--joint", "constant", "--lam", "10000", "--clip-grad", str(clip)))
    assert all(torch.equal(a, b) for a, b in zip(c_small, c_big)) and len(c_big) == len(big_c)
    assert all(torch.equal(a, b) for a, b in zip(c_big, big_c))        # untouched: under its own clip
    assert norm(p_big) == pytest.approx(clip, rel=1e-4)                # PWTP clipped on its own


def test_rgb_clips_exactly_as_one_global_clip():
    _, raw = step_grads(make_run("--input", "rgb", "--clip-grad", "0"))
    clip = norm(raw) / 3                 # a clip that bites
    run = make_run("--input", "rgb", "--clip-grad", str(clip))
    assert not run.joint.theta_p
    for p, g in zip(run.joint.theta_c, raw):     # the former clip, over model.parameters(), on the raw gradients
        p.grad = g.clone()
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), clip)
    expected = [p.grad.clone() for p in run.joint.theta_c]
    _, clipped = step_grads(make_run("--input", "rgb", "--clip-grad", str(clip)))
    assert len(clipped) == len(expected) and all(torch.equal(a, b) for a, b in zip(clipped, expected))


@pytest.mark.parametrize("theta", ["theta_p", "theta_c"])
def test_a_non_finite_gradient_in_either_group_stops_before_the_update(theta, monkeypatch):
    run = make_run("--joint", "constant")
    before = [p.detach().clone() for p in run.model.parameters()]
    real = run.joint.step

    def poisoned(step):
        info = real(step)
        getattr(run.joint, theta)[0].grad.view(-1)[0] = float("inf")
        return info
    monkeypatch.setattr(run.joint, "step", poisoned)
    with pytest.raises(SystemExit, match="non-finite gradient norm at step 1"):
        step_grads(run)
    assert all(torch.equal(a, p) for a, p in zip(before, run.model.parameters()))   # no update
