"""What the Lambda images (the API and the batch worker) know of Lambda, decided once: torch's threads for
the function's CPU share, preloading the models in the init phase, and the service both create. newsgen
itself knows nothing of Lambda: it is given settings and deadlines."""

from __future__ import annotations

import os
from collections.abc import Callable

from newsgen.service import NewsService
from newsgen.settings import Settings
from newsgen.store import LoadedModel

# Lambda grants one vCPU of CPU time per 1,769 MB of memory, however many CPUs the process sees.
MB_PER_VCPU = 1769


def create_service(settings: Settings, on_model_loaded: Callable[[LoadedModel], None] | None = None) -> NewsService:
    """The news service of an execution environment, created in its init phase: torch's threads set, and
    the models preloaded when PRELOAD_MODELS=true."""
    import torch

    torch.set_num_threads(settings.torch_threads or default_threads())
    service = NewsService(settings, on_model_loaded=on_model_loaded)
    if settings.preload_models:
        preload_at_init(service, settings.init_budget_seconds)
    return service


def preload_at_init(service: NewsService, budget_s: float) -> bool:
    """Preload in a Lambda init phase. On demand, Lambda abandons an init that passes 10 s and runs it again
    inside the first invocation, so hand over `budget_s` after the process started (imports included) and let
    loading go on in the background; provisioned concurrency has no such limit and loads everything before
    taking traffic. Returns whether loading finished."""
    if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "provisioned-concurrency":
        return service.preload()
    return service.preload(max(0.0, budget_s - process_age_seconds()))


def process_age_seconds() -> float:
    """Seconds since this process started (Linux /proc; 0 where unknown)."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
            return max(0.0, float(uptime.read().split()[0]) - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def default_threads() -> int:
    """Threads for torch: in Lambda one per vCPU of CPU time its memory buys (more contend for the same quota:
    2 threads at 1,024 MB are 2.2x slower than 1, `make bench-memory`), elsewhere every CPU we may use."""
    cpus = len(os.sched_getaffinity(0))
    memory_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    if memory_mb and memory_mb.isdigit():
        return max(1, min(cpus, round(int(memory_mb) / MB_PER_VCPU)))
    return cpus
