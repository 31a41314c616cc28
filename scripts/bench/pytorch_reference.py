#!/usr/bin/env python3
"""Our own PyTorch implementation of lifesweep's training step, for side-by-side timing.

The same network (per block: Conv2d 1->2m 3x3 padding 1, act, Conv2d 2m->m 1x1, act,
Conv2d m->1 1x1, act; the last block ends in a sigmoid with no activation before it),
the same data (fresh random 10x10 boards, each cell alive with p = 0.5, targets after
`steps` steps of the von Neumann rule with dead cells beyond the edges), the same loss
(binary cross-entropy) and optimiser (Adam, lr 1e-3, PyTorch's default betas and eps),
LeakyReLU, batch 128, on one thread (torch.set_num_threads(1), OMP_NUM_THREADS=1).
Data generation is part of the timed batch, as in lifesweep's benchmark.

Modes and output match crates/train/examples/bench.rs (one JSON object per line on stdout,
a readable line on stderr):

    pytorch_reference.py batch [--cells 1x1,1x5,...] [--repeats 5] [--seconds 1.0]
    pytorch_reference.py first-batch [--cell 1x1]   # prints the wall clock after batch 1
    pytorch_reference.py eval [--cell 1x1] [--repeats 5]

When torch cannot be imported, the script creates scripts/bench/.venv and installs torch
there with pip, then runs itself again with that interpreter. PyPI serves only CUDA builds of
torch for Linux x86-64 (PyTorch's CPU-only wheels live on its own index, which this
machine cannot reach), and those import only with their CUDA packages: the install pulls
about 3 GB. CUDA is never used here. Set LIFESWEEP_TORCH to pip's requirement (default
"torch") to pick another version.
"""

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(HERE, ".venv")


def ensure_torch():
    """Imports torch, installing it into the script's own venv first if need be."""
    try:
        import torch  # noqa: F401

        return
    except ImportError:
        pass
    python = os.path.join(VENV, "bin", "python")
    if os.path.abspath(sys.executable) == os.path.abspath(python):
        sys.exit("torch is not importable even in " + VENV + "; remove it and run again")
    if not os.path.exists(python):
        print(f"creating {VENV} and installing torch from PyPI (about 3 GB)", file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        requirement = os.environ.get("LIFESWEEP_TORCH", "torch")
        subprocess.check_call([python, "-m", "pip", "install", "-q", "--upgrade", "pip"])
        subprocess.check_call([python, "-m", "pip", "install", "-q", requirement, "numpy"])
    os.execv(python, [python] + sys.argv)


def one_thread():
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")


one_thread()
ensure_torch()

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(1)
torch.set_num_interop_threads(1)

# The von Neumann neighbourhood: the 4 orthogonal cells.
NEIGHBOURS = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


def life_steps(boards, steps):
    """`steps` steps of the rule on [N, 1, H, W] 0/1 boards, zero padding."""
    x = boards
    for _ in range(steps):
        n = F.conv2d(x, NEIGHBOURS, padding=1)
        x = ((n == 3) | ((x == 1) & (n == 2))).float()
    return x


def make_batch(count, size, steps, generator):
    boards = (torch.rand(count, 1, size, size, generator=generator) < 0.5).float()
    return boards, life_steps(boards, steps)


class Net(nn.Module):
    def __init__(self, steps, m_factor):
        super().__init__()
        layers = []
        for block in range(steps):
            last = block == steps - 1
            layers += [
                nn.Conv2d(1, 2 * m_factor, 3, padding=1),
                nn.LeakyReLU(),
                nn.Conv2d(2 * m_factor, m_factor, 1),
                nn.LeakyReLU(),
                nn.Conv2d(m_factor, 1, 1),
            ]
            layers.append(nn.Sigmoid() if last else nn.LeakyReLU())
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


def train(net, optimizer, steps, batches, generator, batch_size=128, size=10):
    loss_fn = nn.BCELoss()
    for _ in range(batches):
        x, y = make_batch(batch_size, size, steps, generator)
        optimizer.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        optimizer.step()
    return loss.item()


def setup(steps, m_factor, seed=1):
    torch.manual_seed(seed)
    net = Net(steps, m_factor)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    return net, optimizer, torch.Generator().manual_seed(seed)


def flops_per_batch(steps, m_factor, batch_size=128, size=10):
    n = batch_size * size * size
    c1, c2 = 2 * m_factor, m_factor
    forward = 9 * c1 + c1 * c2 + c2
    inputs = c1 * c2 + c2
    return 2 * n * (steps * (2 * forward + inputs) + (steps - 1) * 9 * c1)


def parse_cell(cell):
    steps, m = cell.split("x")
    return int(steps), int(m)


def options(argv):
    out = {}
    for key, value in zip(argv[::2], argv[1::2]):
        if not key.startswith("--"):
            sys.exit(f"unexpected argument {key!r}")
        out[key[2:]] = value
    return out


def batch_mode(opts):
    repeats = int(opts.get("repeats", "5"))
    seconds = float(opts.get("seconds", "1.0"))
    for cell in opts.get("cells", "1x1,1x5,1x20,3x1,3x5,3x20").split(","):
        steps, m_factor = parse_cell(cell)
        net, optimizer, generator = setup(steps, m_factor)
        started = time.perf_counter()
        train(net, optimizer, steps, 10, generator)
        estimate = (time.perf_counter() - started) / 10
        batches = max(10, min(20000, int(seconds / estimate)))
        times, cpu = [], []
        for _ in range(repeats):
            net, optimizer, generator = setup(steps, m_factor)
            started, cpu_started = time.perf_counter(), time.thread_time()
            train(net, optimizer, steps, batches, generator)
            times.append((time.perf_counter() - started) * 1e3 / batches)
            cpu.append((time.thread_time() - cpu_started) * 1e3 / batches)
        data = []
        for _ in range(repeats):
            generator = torch.Generator().manual_seed(1)
            started = time.thread_time()
            for _ in range(batches):
                make_batch(128, 10, steps, generator)
            data.append((time.thread_time() - started) * 1e3 / batches)
        times.sort()
        data.sort()
        ms_min, ms_median = times[0], times[len(times) // 2]
        gflops = flops_per_batch(steps, m_factor) / (ms_min * 1e-3) / 1e9
        print(json.dumps({
            "mode": "batch", "steps": steps, "m_factor": m_factor, "batches": batches,
            "repeats": repeats, "ms_min": round(ms_min, 4), "ms_median": round(ms_median, 4),
            "cpu_ms_min": round(min(cpu), 4), "data_ms": round(data[len(data) // 2], 4),
            "gflops": round(gflops, 2),
        }), flush=True)
        print(f"steps {steps} m_factor {m_factor:>2}: {ms_min:.3f} ms/batch (median "
              f"{ms_median:.3f}, cpu {min(cpu):.3f}, {repeats} x {batches} batches), data "
              f"{data[len(data) // 2]:.4f} ms, {gflops:.1f} GFLOP/s", file=sys.stderr)


def first_batch_mode(opts):
    steps, m_factor = parse_cell(opts.get("cell", "1x1"))
    net, optimizer, generator = setup(steps, m_factor)
    train(net, optimizer, steps, 1, generator)
    print(json.dumps({"mode": "first-batch", "steps": steps, "m_factor": m_factor,
                      "epoch_ns": time.time_ns()}), flush=True)


def eval_mode(opts):
    steps, m_factor = parse_cell(opts.get("cell", "1x1"))
    repeats = int(opts.get("repeats", "5"))
    net, _, generator = setup(steps, m_factor)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        with torch.no_grad():
            x, y = make_batch(1000, 5, steps, generator)
            right = (net(x).clamp(0, 1).round() == y).flatten(1).all(1).float().mean().item()
        times.append((time.perf_counter() - started) * 1e3)
    times.sort()
    print(json.dumps({"mode": "eval", "steps": steps, "m_factor": m_factor, "boards": 1000,
                      "ms_min": round(times[0], 4), "ms_median": round(times[len(times) // 2], 4),
                      "success_rate": right}), flush=True)
    print(f"eval of 1000 boards, steps {steps} m_factor {m_factor}: {times[0]:.3f} ms",
          file=sys.stderr)


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "batch"
    opts = options(sys.argv[2:])
    modes = {"batch": batch_mode, "first-batch": first_batch_mode, "eval": eval_mode}
    if mode not in modes:
        sys.exit(f"unknown mode {mode!r}: batch, first-batch or eval")
    modes[mode](opts)


if __name__ == "__main__":
    main()
