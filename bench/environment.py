"""The machine and software a run measured, recorded in its JSON file."""
import os
import platform
import sys

import torch

import fusedrnn


def available_devices():
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def describe():
    """machine, versions and build_info entries of the JSON file; call it
    before measuring, so that the load average is that of other jobs."""
    return {"machine": _machine(), "versions": _versions(), "build_info": fusedrnn.build_info()}


def _machine():
    gpus = [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
    return {"cpu": _cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpus": gpus, "platform": platform.platform(),
            # Other jobs on the cores distort CPU timings (and stall torch's
            # worker threads); the 1, 5 and 15 minute averages at the start.
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}


def _versions():
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"python": sys.version.split()[0], "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": cudnn, "fusedrnn": fusedrnn.__version__}


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # not Linux
        pass
    return platform.processor() or "unknown"
