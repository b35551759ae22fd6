"""Where the GPU time of one LSTM training step goes: fusedrnn against
nn.LSTM (cuDNN), per kernel, from torch.profiler.

    PYTHONPATH=. python tools/cuda_profile.py [--size fastrnns] [--dtypes fp32,bf16]

For each dtype it prints, per implementation, the wall time of one step,
the summed GPU kernel time (the difference is time the GPU sat idle, waiting
for the host to launch work) and the kernels that took the most GPU time.
Sizes and dtypes are bench/cuda_bench.py's.
"""
import argparse
import time

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

import fusedrnn
from bench.cuda_bench import DTYPES, SIZES, make_step


def profile_step(step, label, rows):
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        began = time.perf_counter()
        step()
        torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - began) * 1e3
    kernels = [e for e in prof.key_averages() if e.device_time_total > 0]
    gpu_ms = sum(e.self_device_time_total for e in kernels) / 1e3
    print(f"--- {label}: wall {wall_ms:.2f} ms, GPU kernels {gpu_ms:.2f} ms "
          f"(idle {max(wall_ms - gpu_ms, 0):.2f} ms)")
    for e in sorted(kernels, key=lambda e: -e.self_device_time_total)[:rows]:
        print(f"  {e.self_device_time_total / 1e3:8.2f} ms {e.count:6d}x  {e.key[:90]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="fastrnns", choices=SIZES)
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--mode", default="train", choices=("forward", "train"))
    parser.add_argument("--rows", type=int, default=8)
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    T, B, I, H = SIZES[args.size]
    for name in args.dtypes.split(","):
        dtype = DTYPES[name]
        ours = fusedrnn.LSTM(I, H, device="cuda", dtype=dtype)
        theirs = nn.LSTM(I, H, device="cuda", dtype=dtype)
        theirs.load_state_dict(ours.state_dict())
        x = torch.randn(T, B, I, device="cuda", dtype=dtype)
        for impl, module in (("cudnn", theirs), ("fusedrnn", ours)):
            profile_step(make_step(module, x, args.mode),
                         f"{impl} {args.size} {name} {args.mode}", args.rows)


if __name__ == "__main__":
    main()
