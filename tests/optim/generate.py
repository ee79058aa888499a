#!/usr/bin/env python3
"""Generate PyTorch reference fixtures for TensorBrain's optimizers and LR schedulers.

Run from the repository root:

    pip install torch safetensors
    python3 tests/optim/generate.py

Writes tests/optim/fixtures.safetensors, replayed by tensorbrain/tests/optim.rs. Generation is
deterministic (fixed seed, fixed case order, single-threaded PyTorch, single-tensor optimizer
code paths: foreach=False).

Layout
------
Metadata (all JSON strings):
  "optimizer_cases": list of {name, optimizer, problem, dtype, steps, groups, scheduler?}
      optimizer: sgd | adam | adamw | lion | rmsprop
      problem:   "grads"     -- precomputed gradient sequence (f32), grads.g0[t] / grads.g1[t];
                                parameter 1 gets no gradient at the steps where grads.mask1 is 0
                 "quadratic" -- closed loop (f64): loss = mean((W * x + b - y)^2) + 0.1 mean(W^4)
                                with W = problem.W0, b = problem.b0, x = problem.x, y = problem.y
      groups:    list of {params: [indices into (W, b)], options: {...}}; option keys are the
                 TensorBrain hyperparameter names (lr, momentum, dampening, weight_decay,
                 nesterov, maximize, beta1, beta2, eps, amsgrad, alpha, centered)
      scheduler: optional {kind, ...} stepped after every optimizer step
  "scheduler_cases": list of {name, kind, optimizer, base_lrs, steps, ...args}
Tensors:
  grads.W0 [3,4], grads.b0 [4], grads.g0 [S,3,4], grads.g1 [S,4], grads.mask1 [S]   (f32)
  problem.W0, problem.b0, problem.x [3,4], problem.y [3,4]                          (f64)
  <case>.p0 [steps,3,4], <case>.p1 [steps,4]: the parameters after each step
  <case>.lr [steps, groups]: group learning rates after each step (cases with a scheduler)
  sched.<name>.lr [steps+1, groups]: lrs right after construction, then after each step
  sched.<name>.momentum [steps+1, groups]: momentum (or beta1) when momentum is cycled
  sched.<name>.metrics [steps]: the metric passed to ReduceLROnPlateau.step
"""

import json
import math
import os

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures.safetensors")

F32 = torch.float32
F64 = torch.float64
GRAD_STEPS = 14
QUAD_STEPS = 20


# --------------------------------------------------------------------------------------------
# Lion (not in torch.optim): the reference implementation of Chen et al. 2023 (lucidrains'
# lion-pytorch), op for op.
# --------------------------------------------------------------------------------------------

class Lion(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False):
        if not 0.0 <= lr:
            raise ValueError(lr)
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay, maximize=maximize))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = -p.grad if group["maximize"] else p.grad
                state = self.state[p]
                if len(state) == 0:
                    state["exp_avg"] = torch.zeros_like(p)
                exp_avg = state["exp_avg"]
                if wd != 0:
                    p.mul_(1 - lr * wd)
                update = exp_avg.clone().mul_(beta1).add(grad, alpha=1 - beta1).sign_()
                p.add_(update, alpha=-lr)
                exp_avg.mul_(beta2).add_(grad, alpha=1 - beta2)


# --------------------------------------------------------------------------------------------
# Optimizer construction from the JSON description (TensorBrain names -> torch kwargs).
# --------------------------------------------------------------------------------------------

def torch_kwargs(kind, o):
    o = dict(o)
    if kind == "sgd":
        return dict(lr=o["lr"], momentum=o.get("momentum", 0.0), dampening=o.get("dampening", 0.0),
                    weight_decay=o.get("weight_decay", 0.0), nesterov=o.get("nesterov", False),
                    maximize=o.get("maximize", False), foreach=False)
    if kind in ("adam", "adamw"):
        wd_default = 0.0 if kind == "adam" else 1e-2
        return dict(lr=o["lr"], betas=(o.get("beta1", 0.9), o.get("beta2", 0.999)), eps=o.get("eps", 1e-8),
                    weight_decay=o.get("weight_decay", wd_default), amsgrad=o.get("amsgrad", False),
                    maximize=o.get("maximize", False), foreach=False)
    if kind == "lion":
        return dict(lr=o["lr"], betas=(o.get("beta1", 0.9), o.get("beta2", 0.99)),
                    weight_decay=o.get("weight_decay", 0.0), maximize=o.get("maximize", False))
    if kind == "rmsprop":
        return dict(lr=o["lr"], alpha=o.get("alpha", 0.99), eps=o.get("eps", 1e-8),
                    weight_decay=o.get("weight_decay", 0.0), momentum=o.get("momentum", 0.0),
                    centered=o.get("centered", False), maximize=o.get("maximize", False), foreach=False)
    if kind == "adagrad":
        return dict(lr=o["lr"], lr_decay=o.get("lr_decay", 0.0), weight_decay=o.get("weight_decay", 0.0),
                    initial_accumulator_value=o.get("initial_accumulator_value", 0.0), eps=o.get("eps", 1e-10),
                    maximize=o.get("maximize", False), foreach=False)
    if kind == "adamax":
        return dict(lr=o["lr"], betas=(o.get("beta1", 0.9), o.get("beta2", 0.999)), eps=o.get("eps", 1e-8),
                    weight_decay=o.get("weight_decay", 0.0), maximize=o.get("maximize", False), foreach=False)
    if kind == "adadelta":
        return dict(lr=o["lr"], rho=o.get("rho", 0.9), eps=o.get("eps", 1e-6), weight_decay=o.get("weight_decay", 0.0),
                    maximize=o.get("maximize", False), foreach=False)
    if kind == "radam":
        return dict(lr=o["lr"], betas=(o.get("beta1", 0.9), o.get("beta2", 0.999)), eps=o.get("eps", 1e-8),
                    weight_decay=o.get("weight_decay", 0.0), decoupled_weight_decay=o.get("decoupled_weight_decay", False),
                    maximize=o.get("maximize", False), foreach=False)
    if kind == "nadam":
        return dict(lr=o["lr"], betas=(o.get("beta1", 0.9), o.get("beta2", 0.999)), eps=o.get("eps", 1e-8),
                    weight_decay=o.get("weight_decay", 0.0), momentum_decay=o.get("momentum_decay", 4e-3),
                    decoupled_weight_decay=o.get("decoupled_weight_decay", False), maximize=o.get("maximize", False), foreach=False)
    raise ValueError(kind)


OPT_CLASSES = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
               "lion": Lion, "rmsprop": torch.optim.RMSprop, "adagrad": torch.optim.Adagrad,
               "adamax": torch.optim.Adamax, "adadelta": torch.optim.Adadelta, "radam": torch.optim.RAdam,
               "nadam": torch.optim.NAdam}


def make_optimizer(kind, params, groups):
    cls = OPT_CLASSES[kind]
    torch_groups = [dict(params=[params[i] for i in g["params"]], **torch_kwargs(kind, g["options"])) for g in groups]
    first = torch_groups[0]
    defaults = {k: v for k, v in first.items() if k != "params"}
    return cls(torch_groups, **defaults)


def make_scheduler(opt, s):
    kind = s["kind"]
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(opt, s["step_size"], s["gamma"])
    if kind == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(opt, s["milestones"], s["gamma"])
    if kind == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(opt, s["gamma"])
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, s["t_max"], s["eta_min"])
    if kind == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=s["max_lr"], total_steps=s["total_steps"], pct_start=s.get("pct_start", 0.3),
            anneal_strategy=s.get("anneal", "cos"), cycle_momentum=s.get("cycle_momentum", True),
            base_momentum=s.get("base_momentum", 0.85), max_momentum=s.get("max_momentum", 0.95),
            div_factor=s.get("div_factor", 25.0), final_div_factor=s.get("final_div_factor", 1e4),
            three_phase=s.get("three_phase", False))
    if kind == "warmup_cosine":
        # TensorBrain's LinearWarmupCosine, as a LambdaLR over the group's base lr.
        w, t, s0, min_lr = s["warmup_steps"], s["total_steps"], s["start_factor"], s["min_lr"]
        bases = [g["lr"] for g in opt.param_groups]

        def factor(base):
            def f(step):
                if step < w:
                    return s0 + (1.0 - s0) * step / w
                if step >= t:
                    return min_lr / base
                return (min_lr + (base - min_lr) * 0.5 * (1.0 + math.cos(math.pi * (step - w) / (t - w)))) / base
            return f

        return torch.optim.lr_scheduler.LambdaLR(opt, [factor(b) for b in bases])
    if kind == "warmup_cosine_sequential":
        w, t = s["warmup_steps"], s["total_steps"]
        lin = torch.optim.lr_scheduler.LinearLR(opt, start_factor=s["start_factor"], end_factor=1.0, total_iters=w)
        cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t - w, eta_min=s["min_lr"])
        return torch.optim.lr_scheduler.SequentialLR(opt, [lin, cos], milestones=[w])
    if kind == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode=s["mode"], factor=s["factor"], patience=s["patience"], threshold=s["threshold"],
            threshold_mode=s["threshold_mode"], cooldown=s["cooldown"], min_lr=s["min_lr"], eps=s.get("eps", 1e-8))
    raise ValueError(kind)


def group_momentum(g):
    return g["betas"][0] if "betas" in g else g["momentum"]


# --------------------------------------------------------------------------------------------
# Problems.
# --------------------------------------------------------------------------------------------

def quadratic_loss(W, b, x, y):
    r = W * x + b - y
    return (r * r).mean() + 0.1 * (W ** 4).mean()


def run_optimizer_case(case, problem, tensors):
    kind, steps = case["optimizer"], case["steps"]
    if case["problem"] == "grads":
        W = problem["grads.W0"].clone().requires_grad_(True)
        b = problem["grads.b0"].clone().requires_grad_(True)
    else:
        W = problem["problem.W0"].clone().requires_grad_(True)
        b = problem["problem.b0"].clone().requires_grad_(True)
    params = [W, b]
    opt = make_optimizer(kind, params, case["groups"])
    sched = make_scheduler(opt, case["scheduler"]) if "scheduler" in case else None
    p0, p1, lrs = [], [], []
    for t in range(steps):
        opt.zero_grad()
        if case["problem"] == "grads":
            W.grad = problem["grads.g0"][t].clone()
            b.grad = problem["grads.g1"][t].clone() if problem["grads.mask1"][t] > 0 else None
        else:
            quadratic_loss(W, b, problem["problem.x"], problem["problem.y"]).backward()
        opt.step()
        if sched is not None:
            sched.step()
            lrs.append([g["lr"] for g in opt.param_groups])
        p0.append(W.detach().clone())
        p1.append(b.detach().clone())
    name = case["name"]
    tensors[f"{name}.p0"] = torch.stack(p0)
    tensors[f"{name}.p1"] = torch.stack(p1)
    if sched is not None:
        tensors[f"{name}.lr"] = torch.tensor(lrs, dtype=F64)


def optimizer_cases():
    g = lambda params, **options: {"params": params, "options": options}
    one = lambda **options: [g([0, 1], **options)]
    cases = []

    def add(name, optimizer, groups, problem="grads", scheduler=None):
        c = {"name": name, "optimizer": optimizer, "problem": problem, "dtype": "f32" if problem == "grads" else "f64",
             "steps": GRAD_STEPS if problem == "grads" else QUAD_STEPS, "groups": groups}
        if scheduler is not None:
            c["scheduler"] = scheduler
        cases.append(c)

    # SGD
    add("sgd_plain", "sgd", one(lr=0.1))
    add("sgd_momentum", "sgd", one(lr=0.05, momentum=0.9))
    add("sgd_momentum_dampening_wd", "sgd", one(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01))
    add("sgd_nesterov_wd", "sgd", one(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.05))
    add("sgd_maximize", "sgd", one(lr=0.03, momentum=0.5, maximize=True))
    add("sgd_groups", "sgd", [g([0], lr=0.05, momentum=0.9, weight_decay=0.1), g([1], lr=0.2, momentum=0.0)])
    # Adam / AdamW
    add("adam_default", "adam", one(lr=1e-2))
    add("adam_wd_amsgrad", "adam", one(lr=2e-2, beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=0.1, amsgrad=True))
    add("adam_small_beta1_maximize", "adam", one(lr=1e-2, beta1=0.3, beta2=0.9, maximize=True))
    add("adamw_default", "adamw", one(lr=1e-2))
    add("adamw_amsgrad", "adamw", one(lr=5e-2, weight_decay=0.1, amsgrad=True))
    add("adamw_groups", "adamw", [g([0], lr=1e-2, weight_decay=0.1), g([1], lr=5e-2, weight_decay=0.0, beta1=0.5, beta2=0.9)])
    # Lion
    add("lion_default", "lion", one(lr=1e-2))
    add("lion_wd", "lion", one(lr=3e-3, beta1=0.95, beta2=0.98, weight_decay=0.5))
    # RMSprop
    add("rmsprop_default", "rmsprop", one(lr=1e-2))
    add("rmsprop_momentum", "rmsprop", one(lr=5e-3, momentum=0.5))
    add("rmsprop_centered_momentum_wd", "rmsprop", one(lr=1e-2, alpha=0.9, eps=1e-6, momentum=0.9, centered=True, weight_decay=0.01))
    add("rmsprop_centered_maximize", "rmsprop", one(lr=1e-3, centered=True, maximize=True))
    # Closed loop in f64: the optimizer's output feeds the next gradient.
    add("sgd_nesterov_f64", "sgd", one(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3), problem="quadratic")
    add("adam_f64", "adam", one(lr=5e-2, weight_decay=1e-2), problem="quadratic")
    add("adamw_amsgrad_f64", "adamw", one(lr=5e-2, amsgrad=True), problem="quadratic")
    add("lion_f64", "lion", one(lr=2e-2, weight_decay=0.1), problem="quadratic")
    add("rmsprop_centered_f64", "rmsprop", one(lr=1e-2, momentum=0.5, centered=True), problem="quadratic")
    # Adagrad, Adamax, Adadelta, RAdam, NAdam (issue 11)
    add("adagrad_default", "adagrad", one(lr=1e-1))
    add("adagrad_decay_init_wd_maximize", "adagrad", one(lr=5e-2, lr_decay=0.1, initial_accumulator_value=0.5, weight_decay=0.05, maximize=True))
    add("adamax_default", "adamax", one(lr=2e-2))
    add("adamax_wd", "adamax", one(lr=1e-2, beta1=0.8, beta2=0.95, weight_decay=0.1, maximize=True))
    add("adadelta_default", "adadelta", one(lr=1.0))
    add("adadelta_wd", "adadelta", one(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.1))
    add("radam_default", "radam", one(lr=1e-2))
    add("radam_decoupled", "radam", one(lr=1e-2, beta2=0.9, weight_decay=0.1, decoupled_weight_decay=True))
    add("radam_l2_maximize", "radam", one(lr=1e-2, beta2=0.8, weight_decay=0.05, maximize=True))
    add("nadam_default", "nadam", one(lr=1e-2))
    add("nadam_wd_decoupled", "nadam", one(lr=1e-2, momentum_decay=0.01, weight_decay=0.1, decoupled_weight_decay=True))
    add("nadam_l2_maximize", "nadam", one(lr=1e-2, beta1=0.8, weight_decay=0.05, maximize=True))
    add("adagrad_f64", "adagrad", one(lr=0.2, lr_decay=0.01), problem="quadratic")
    add("adamax_f64", "adamax", one(lr=5e-2), problem="quadratic")
    add("adadelta_f64", "adadelta", one(lr=1.0, weight_decay=1e-3), problem="quadratic")
    add("radam_f64", "radam", one(lr=5e-2), problem="quadratic")
    add("nadam_f64", "nadam", one(lr=5e-2, weight_decay=1e-2), problem="quadratic")
    # With a scheduler stepped after every optimizer step.
    add("sgd_onecycle", "sgd", [g([0], lr=0.1, momentum=0.9), g([1], lr=0.1, momentum=0.9)],
        scheduler={"kind": "onecycle", "max_lr": [0.2, 0.05], "total_steps": GRAD_STEPS})
    add("adamw_onecycle", "adamw", one(lr=1e-2), scheduler={"kind": "onecycle", "max_lr": [0.05], "total_steps": GRAD_STEPS + 2})
    add("adam_cosine", "adam", one(lr=5e-2), scheduler={"kind": "cosine", "t_max": 10, "eta_min": 1e-3})
    add("rmsprop_step", "rmsprop", one(lr=1e-2, momentum=0.3), scheduler={"kind": "step", "step_size": 4, "gamma": 0.5})
    add("sgd_quadratic_plain", "sgd", one(lr=0.2), problem="quadratic")
    return cases


def scheduler_cases():
    base = [0.1, 0.02]
    sgd = {"optimizer": "sgd", "base_lrs": base}
    c = []
    c.append(dict(name="step", kind="step", step_size=7, gamma=0.5, steps=35, **sgd))
    c.append(dict(name="multistep", kind="multistep", milestones=[5, 12, 12, 20], gamma=0.3, steps=32, **sgd))
    c.append(dict(name="exponential", kind="exponential", gamma=0.9, steps=32, **sgd))
    c.append(dict(name="cosine_periodic", kind="cosine", t_max=10, eta_min=1e-3, steps=35, **sgd))
    c.append(dict(name="cosine_long", kind="cosine", t_max=30, eta_min=0.0, steps=30, **sgd))
    c.append(dict(name="onecycle", kind="onecycle", max_lr=[0.5, 0.1], total_steps=40, steps=40, **sgd))
    c.append(dict(name="onecycle_linear_three_phase_adam", kind="onecycle", max_lr=[0.3, 0.3], total_steps=32,
                  steps=32, anneal="linear", three_phase=True, pct_start=0.25, div_factor=10.0,
                  final_div_factor=100.0, base_momentum=0.8, max_momentum=0.9, optimizer="adam", base_lrs=base))
    c.append(dict(name="onecycle_no_momentum", kind="onecycle", max_lr=[0.4, 0.2], total_steps=31, steps=31,
                  pct_start=0.4, cycle_momentum=False, **sgd))
    c.append(dict(name="warmup_cosine", kind="warmup_cosine", warmup_steps=5, total_steps=30, start_factor=0.1,
                  min_lr=1e-3, steps=36, **sgd))
    c.append(dict(name="warmup_cosine_zero_start", kind="warmup_cosine", warmup_steps=8, total_steps=32,
                  start_factor=0.0, min_lr=0.0, steps=34, **sgd))
    c.append(dict(name="warmup_cosine_sequential", kind="warmup_cosine_sequential", warmup_steps=5, total_steps=30,
                  start_factor=0.1, min_lr=1e-3, steps=30, **sgd))
    metrics1 = [1.0, 0.9, 0.8, 0.79, 0.795, 0.79, 0.792, 0.6, 0.6, 0.6, 0.6, 0.6, 0.59, 0.6, 0.6,
                0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    c.append(dict(name="plateau_min_rel", kind="plateau", mode="min", factor=0.5, patience=2, threshold=0.01,
                  threshold_mode="rel", cooldown=1, min_lr=0.004, metrics=metrics1, steps=len(metrics1), **sgd))
    metrics2 = [0.1, 0.3, 0.35, 0.38, 0.5, 0.55, 0.58, 0.59, 0.7, 0.65, 0.66, 0.69, 0.72, 0.75, 0.79, 0.8,
                0.81, 0.85, 0.84, 0.86, 0.95, 0.9, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99, 1.0]
    c.append(dict(name="plateau_max_abs", kind="plateau", mode="max", factor=0.3, patience=1, threshold=0.1,
                  threshold_mode="abs", cooldown=0, min_lr=[0.001, 0.0005], metrics=metrics2, steps=len(metrics2), **sgd))
    return c


def run_scheduler_case(s, tensors):
    params = [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]
    if s["optimizer"] == "sgd":
        opt = torch.optim.SGD([{"params": [params[i]], "lr": lr} for i, lr in enumerate(s["base_lrs"])],
                              lr=s["base_lrs"][0], momentum=0.9)
    else:
        opt = torch.optim.Adam([{"params": [params[i]], "lr": lr} for i, lr in enumerate(s["base_lrs"])],
                               lr=s["base_lrs"][0], betas=(0.9, 0.999))
    sched = make_scheduler(opt, s)
    lrs = [[g["lr"] for g in opt.param_groups]]
    moms = [[group_momentum(g) for g in opt.param_groups]]
    for t in range(s["steps"]):
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
        if s["kind"] == "plateau":
            sched.step(s["metrics"][t])
        else:
            sched.step()
        lrs.append([g["lr"] for g in opt.param_groups])
        moms.append([group_momentum(g) for g in opt.param_groups])
    tensors[f"sched.{s['name']}.lr"] = torch.tensor(lrs, dtype=F64)
    if s["kind"] == "onecycle" and s.get("cycle_momentum", True):
        tensors[f"sched.{s['name']}.momentum"] = torch.tensor(moms, dtype=F64)
    if s["kind"] == "plateau":
        tensors[f"sched.{s['name']}.metrics"] = torch.tensor(s["metrics"], dtype=F64)


def main():
    torch.manual_seed(1234)
    torch.set_num_threads(1)
    problem = {
        "grads.W0": torch.randn(3, 4, dtype=F32),
        "grads.b0": torch.randn(4, dtype=F32),
        "grads.g0": torch.randn(GRAD_STEPS, 3, 4, dtype=F32),
        "grads.g1": torch.randn(GRAD_STEPS, 4, dtype=F32) * 0.5,
        "grads.mask1": torch.tensor([0.0 if t in (3, 8) else 1.0 for t in range(GRAD_STEPS)], dtype=F32),
        "problem.W0": torch.randn(3, 4, dtype=F64),
        "problem.b0": torch.randn(4, dtype=F64),
        "problem.x": torch.randn(3, 4, dtype=F64),
        "problem.y": torch.randn(3, 4, dtype=F64),
    }
    tensors = dict(problem)
    ocases = optimizer_cases()
    for case in ocases:
        run_optimizer_case(case, problem, tensors)
    scases = scheduler_cases()
    for s in scases:
        run_scheduler_case(s, tensors)
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, OUT, metadata={"optimizer_cases": json.dumps(ocases), "scheduler_cases": json.dumps(scases)})
    print(f"{len(ocases)} optimizer cases, {len(scases)} scheduler cases, {os.path.getsize(OUT)} bytes -> {OUT}")


if __name__ == "__main__":
    main()
