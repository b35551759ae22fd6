"""DistributedDataParallel on gloo, 2 CPU processes: after one step the
gradients equal those of one process on the whole batch."""
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

import fusedrnn

WORLD = 2


def _model():
    torch.manual_seed(0)
    return fusedrnn.LSTM(3, 4, 2, bidirectional=True)


def _batch():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(5, 2 * WORLD, 3, generator=generator)


def _loss(model, x):
    output, (h_n, _) = model(x)
    return output.square().mean() + h_n.mean()


def _worker(rank, store_path, result_path):
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank,
                            world_size=WORLD)
    try:
        torch.set_num_threads(1)
        model = DistributedDataParallel(_model())
        shard = _batch().chunk(WORLD, dim=1)[rank]
        _loss(model, shard).backward()
        if rank == 0:
            torch.save([p.grad for p in model.module.parameters()], result_path)
        # Both ranks leave together: a rank that tears gloo down while the
        # other still talks to it aborts the other (seen once in a full run).
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_ddp_gradients_equal_single_process(tmp_path):
    store, result = tmp_path / "store", tmp_path / "grads.pt"
    mp.start_processes(_worker, args=(str(store), str(result)), nprocs=WORLD,
                       join=True, start_method="spawn")
    distributed = torch.load(result)
    model = _model()
    # DDP averages the shards' gradients; the mean loss over equal shards
    # averages to the mean loss over the whole batch.
    _loss(model, _batch()).backward()
    for got, expected in zip(distributed, (p.grad for p in model.parameters())):
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
