"""How things are measured: time, memory, kernels used, the machine's limit."""
from contextlib import nullcontext

import torch
from torch.overrides import TorchFunctionMode
from torch.utils import benchmark

# Timing runs in rounds that interleave the implementations of a case: the
# speed of a shared machine drifts over minutes (other tenants, clocks), and
# interleaving makes every implementation see the same drift, so the ratios
# hold even when absolute times move. Three rounds also give the large
# sizes, where one call outlasts min_run_time, a median of three calls.
ROUNDS = 3


def time_steps(steps, min_run_time, rounds=ROUNDS):
    """Median and interquartile range, in seconds per call, of each step.

    `steps` maps a name to (step, context): a callable and a context
    manager factory entered around its timing. Each round times every step
    for min_run_time / rounds; a step's statistics pool its rounds.
    torch.utils.benchmark picks how many calls to group per sample, warms
    up, and synchronizes CUDA around each sample.
    """
    per_call = {name: [] for name in steps}
    spec, calls = {}, {}
    for _ in range(rounds):
        for name, (step, context) in steps.items():
            # Timer runs on one thread unless told otherwise; torch runs on all.
            timer = benchmark.Timer("step()", globals={"step": step},
                                    num_threads=torch.get_num_threads())
            with context():
                measurement = timer.blocked_autorange(min_run_time=min_run_time / rounds)
            per_call[name] += measurement.times
            spec[name], calls[name] = measurement.task_spec, measurement.number_per_run
    results = {}
    for name, times in per_call.items():
        pooled = benchmark.Measurement(1, times, spec[name])
        results[name] = {"median_s": pooled.median, "iqr_s": pooled.iqr,
                         "samples": len(times), "calls_per_sample": calls[name]}
    return results


def time_step(step, min_run_time):
    """time_steps for a single step."""
    return time_steps({"step": (step, nullcontext)}, min_run_time)["step"]


class _SavedTensors:
    """Counts the bytes autograd saves for the backward while active.

    Tensors are counted by storage, once each, so views of one buffer count
    once; storages of `exclude` (the inputs and parameters, which exist
    anyway) are not counted. oneDNN's workspace is a plain byte tensor that
    the backward reads, so it is counted like any other saved tensor.
    """

    def __init__(self, exclude):
        self.excluded = {_storage_key(t)[0] for t in exclude}
        self.storages = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, tensor):
        key, nbytes = _storage_key(tensor)
        if key not in self.excluded:
            self.storages[key] = nbytes
        return tensor

    def __enter__(self):
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)

    @property
    def bytes(self):
        return sum(self.storages.values())


def _storage_key(tensor):
    """(identity, size in bytes) of the memory behind `tensor`."""
    try:
        storage = tensor.untyped_storage()
        return storage.data_ptr(), storage.nbytes()
    except (RuntimeError, NotImplementedError):
        # Opaque layouts (oneDNN's blocked tensors) expose no storage.
        return id(tensor), tensor.numel() * tensor.element_size()


class _OpsCalled(TorchFunctionMode):
    """Records the operators of one namespace (e.g. "fusedrnn") that run."""

    def __init__(self, namespace):
        super().__init__()
        self.prefix = f"{namespace}."
        self.ops = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if str(func).startswith(self.prefix):
            self.ops.add(str(func))
        return func(*args, **(kwargs or {}))


def probe(step, leaves, device, namespace=None):
    """Runs `step` once, watching memory and, given `namespace`, its ops.

    Returns saved_bytes (kept for the backward, beyond inputs and
    parameters), cuda_peak_bytes on GPU (the peak during the step, beyond
    what was allocated before), and ops (those of `namespace` that ran).
    """
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    ops = _OpsCalled(namespace) if namespace else None
    with _SavedTensors(exclude=leaves) as saved, ops if ops is not None else nullcontext():
        step()
    result = {"saved_bytes": saved.bytes}
    if cuda:
        torch.cuda.synchronize(device)
        result["cuda_peak_bytes"] = torch.cuda.max_memory_allocated(device) - before
    if ops is not None:
        result["ops"] = sorted(ops.ops)
    return result


def machine_peak(device, dtype, min_run_time, n=None):
    """The GFLOP/s of a large (n x n) matmul: the limit a recurrent cell could reach.

    CPU float32 calls oneDNN's matmul directly (torch.mm goes to another
    BLAS, which is slower here); other dtypes and GPUs use torch.mm (cuBLAS
    on GPU). `n` defaults to a size that reaches the peak; the tests pass a
    small one to save time.
    """
    n = n or (2048 if device == "cpu" else 8192)
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    if device == "cpu" and dtype == torch.float32:
        how = f"oneDNN {n}x{n} fp32 matmul"
        a, b = a.to_mkldnn(), b.to_mkldnn()

        def step():
            torch.ops.aten.mkldnn_linear(a, b, None)
    else:
        how = f"torch.mm {n}x{n} {str(dtype).removeprefix('torch.')}"

        def step():
            torch.mm(a, b)
    step()
    seconds = time_step(step, min_run_time)["median_s"]
    return {"gflops": 2 * n ** 3 / seconds / 1e9, "how": how}


def read_bandwidth(nbytes, min_run_time, bytes_per_call=64 * 2**20):
    """GB/s at which the CPU reads a float32 buffer of `nbytes`, summed over
    and over: the streaming rate of the cache level a buffer that size
    lives in (512 KiB: L2, 16 MiB: L3 on the machines we run on).

    One call sums an expanded view that repeats the buffer (stride 0, no
    copy) to read about `bytes_per_call`: a single sum of 512 KiB takes a
    few microseconds, of which Python's call overhead would be a large part.
    A sum is the cheapest complete read torch has (faster than a
    matrix-vector product over the same bytes), so the limits built on it
    bound from above what a recurrent step can reach, as limits should.
    """
    buffer = torch.ones(max(1, nbytes // 4))
    repeats = max(1, bytes_per_call // buffer.nbytes)
    view = buffer.expand(repeats, -1)

    def step():
        view.sum()
    step()
    seconds = time_step(step, min_run_time)["median_s"]
    return repeats * buffer.nbytes / seconds / 1e9
