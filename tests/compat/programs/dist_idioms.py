# torch.distributed idioms a training script types, on 2 ranks started by torchrun (or distgraph-run):
# object collectives, tensor collectives, point to point (send/recv, batch_isend_irecv), all_to_all_single,
# new_group, async works, DistributedSampler, DDP's no_sync and communication hooks, monitored_barrier,
# the elastic @record decorator, torch.compile with DDP (both orders).  Rank 0 prints one JSON line:
# each idiom's result, or the error it raised.  Run: torchrun --standalone --nproc-per-node 2 dist_idioms.py
import datetime
import json
import os
import torch
import torch.distributed as dist
import torch.distributed.algorithms.ddp_comm_hooks.default_hooks as default_hooks
from torch.distributed.elastic.multiprocessing.errors import record
from torch.distributed.optim import ZeroRedundancyOptimizer
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

res = {}
def rec(name, fn):
    try:
        res[name] = fn()
    except Exception as e:
        res[name] = f"ERR {type(e).__name__}: {e}"[:200]

dist.init_process_group("gloo")
r, n = dist.get_rank(), dist.get_world_size()
rec("available", lambda: [dist.is_available(), dist.is_initialized(), dist.get_backend() in ("gloo", "mpi")])
rec("elastic", lambda: dist.is_torchelastic_launched())
def objs():
    out = [None] * n
    dist.all_gather_object(out, {"rank": r, "sq": r * r})
    return out
rec("all_gather_object", objs)
def bcast_objs():
    lst = [f"hello{r}", r + 10] if r == 0 else [None, None]
    dist.broadcast_object_list(lst, src=0)
    return lst
rec("broadcast_object_list", bcast_objs)
def gather_obj():
    out = [None] * n if r == 0 else None
    dist.gather_object({"r": r}, out, dst=0)
    return out if r == 0 else "n/a"
rec("gather_object", gather_obj)
def scatter_obj():
    out = [None]
    dist.scatter_object_list(out, [f"to{i}" for i in range(n)] if r == 0 else None, src=0)
    return out
rec("scatter_object_list", scatter_obj)
def all_gather():
    t = torch.arange(3, dtype=torch.float32) + 10 * r
    lst = [torch.zeros(3) for _ in range(n)]
    dist.all_gather(lst, t)
    return [x.tolist() for x in lst]
rec("all_gather", all_gather)
def agit():
    t = torch.arange(2, dtype=torch.float32) + r
    out = torch.zeros(2 * n)
    dist.all_gather_into_tensor(out, t)
    return out.tolist()
rec("all_gather_into_tensor", agit)
def reduce_max():
    t = torch.tensor([float(r), 5.0 - r])
    dist.reduce(t, dst=0, op=dist.ReduceOp.MAX)
    return t.tolist() if r == 0 else "n/a"
rec("reduce_max", reduce_max)
def scatter():
    out = torch.zeros(2)
    dist.scatter(out, [torch.full((2,), float(i)) for i in range(n)] if r == 0 else None, src=0)
    return out.tolist()
rec("scatter", scatter)
def gather():
    t = torch.full((2,), float(r))
    lst = [torch.zeros(2) for _ in range(n)] if r == 0 else None
    dist.gather(t, lst, dst=0)
    return [x.tolist() for x in lst] if r == 0 else "n/a"
rec("gather", gather)
def p2p():
    if r == 0:
        dist.send(torch.tensor([1.0, 2.0]), dst=1)
        return "sent"
    t = torch.zeros(2)
    dist.recv(t, src=0)
    return t.tolist()
rec("send_recv", p2p)
def ip2p():
    t = torch.full((3,), float(r))
    buf = torch.zeros(3)
    ops = [dist.P2POp(dist.isend, t, (r + 1) % n), dist.P2POp(dist.irecv, buf, (r - 1) % n)]
    for req in dist.batch_isend_irecv(ops):
        req.wait()
    return buf.tolist()
rec("batch_isend_irecv", ip2p)
def a2a():
    t = torch.arange(n, dtype=torch.float32) + 10 * r
    out = torch.zeros(n)
    dist.all_to_all_single(out, t)
    return out.tolist()
rec("all_to_all_single", a2a)
def newgroup():
    g = dist.new_group([0, 1])
    t = torch.ones(1) * (r + 1)
    dist.all_reduce(t, group=g)
    return [t.item(), dist.get_rank(g), dist.get_world_size(g)]
rec("new_group", newgroup)
def work_obj():
    t = torch.ones(2) * r
    w = dist.all_reduce(t, async_op=True)
    w.wait()
    return [t.tolist(), w.is_completed()]
rec("async_work", work_obj)
def barrier():
    dist.barrier()
    return "ok"
rec("barrier", barrier)
def sampler():
    ds = TensorDataset(torch.arange(10).float())
    s = DistributedSampler(ds, shuffle=True, seed=3, drop_last=False)
    s.set_epoch(1)
    idx = list(iter(s))
    dl = DataLoader(ds, batch_size=2, sampler=s)
    return [idx, len(s), len(dl)]
rec("sampler_len", lambda: sampler()[1:])
def ddp():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    dm = DDP(m, find_unused_parameters=False)
    opt = torch.optim.SGD(dm.parameters(), lr=0.1)
    x = torch.ones(3, 4) * (r + 1)
    with dm.no_sync():
        dm(x).sum().backward()
    local = m[0].weight.grad.clone()
    dm(x).sum().backward()
    synced = m[0].weight.grad.clone()
    t = synced.clone(); dist.all_reduce(t)
    return [bool(torch.allclose(t / n, synced)), bool(not torch.allclose(local * 2, synced)), type(dm.module).__name__]
rec("ddp_no_sync", ddp)
def tensor_types():
    t = torch.tensor([1, 2], dtype=torch.int64) * (r + 1)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    b = torch.tensor([r == 0])
    dist.broadcast(b, src=0)
    return [t.tolist(), t.dtype == torch.int64, b.tolist()]
rec("int_bool", tensor_types)
def hooks():
    out, seen = [], []
    def mean_hook(state, bucket):
        seen.append([bucket.index(), bucket.is_last(), len(bucket.parameters()), bucket.buffer().numel()])
        fut = dist.all_reduce(bucket.buffer(), group=state, async_op=True).get_future()
        return fut.then(lambda f: f.value()[0] / state.size())
    for hook, state in ((default_hooks.allreduce_hook, None), (default_hooks.fp16_compress_hook, None),
                        (mean_hook, dist.group.WORLD)):
        torch.manual_seed(0)
        m = nn.Linear(4, 2)
        dm = DDP(m)
        dm.register_comm_hook(state, hook)
        (dm(torch.ones(3, 4) * (r + 1)) * torch.tensor([1.0, 2.0])).sum().backward()
        out.append(m.weight.grad.flatten().tolist() + m.bias.grad.tolist())
    try:
        dm.register_comm_hook(None, default_hooks.allreduce_hook)
        out.append("second hook accepted")
    except RuntimeError:
        out.append("second hook refused")
    return out + seen
rec("ddp_comm_hooks", hooks)
def futures():
    f = torch.futures.Future()
    g = f.then(lambda x: x.value() * 3)
    f.set_result(2)
    w = dist.all_reduce(torch.ones(2) * (r + 1), async_op=True).get_future()
    return [g.wait(), w.wait()[0].tolist(), type(w).__name__]
rec("futures", futures)
def group_calls():
    return [dist.group.WORLD.size(), dist.group.WORLD.rank() == r, dist.get_node_local_rank(fallback_rank=0) == r]
rec("group_size_rank", group_calls)
def monitored():
    return [dist.monitored_barrier(timeout=datetime.timedelta(seconds=60)), dist.monitored_barrier(wait_all_ranks=True)]
rec("monitored_barrier", monitored)
def recorded():
    @record
    def fine(x):
        return x + 1
    @record
    def fails():
        raise ValueError(f"bad thing on rank {r}")
    path = os.path.abspath(f"error_{r}.json")
    os.environ["TORCHELASTIC_ERROR_FILE"] = path
    try:
        fails()
        raised = "no"
    except ValueError as e:
        raised = str(e)
    del os.environ["TORCHELASTIC_ERROR_FILE"]
    with open(path) as f:
        err = json.load(f)
    return [fine(1), fine.__name__, raised, err["message"]["message"], sorted(err["message"]["extraInfo"])]
rec("elastic_record", recorded)
def join_uneven():
    out = []
    for kwargs in ({}, {"divide_by_initial_world_size": False}, {"throw_on_early_termination": True}):
        m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
        with torch.no_grad():
            for k, p in enumerate(m.parameters()):
                p.copy_(torch.cos(torch.arange(p.numel(), dtype=torch.float32) + k).reshape(p.shape))
        dm = DDP(m)
        opt = torch.optim.SGD(dm.parameters(), lr=0.05)
        try:
            with dm.join(**kwargs):
                for i in range(2 + 2 * r):               # rank 1 has two more batches
                    opt.zero_grad()
                    x = torch.cos(torch.arange(12.0).reshape(4, 3) * (i + 1 + r))
                    dm(x).pow(2).sum().backward()
                    opt.step()
            out.append([round(v, 4) for p in m.parameters() for v in p.flatten().tolist()]
                       + [int(m[1].num_batches_tracked)])
        except RuntimeError as e:
            out.append(str(e))
    return out
rec("ddp_join_uneven", join_uneven)
def more_api():
    outs = [torch.zeros(2) for _ in range(n)]                 # (gloo wants equal sizes)
    dist.all_to_all(outs, [torch.full((2,), float(10 * r + q)) for q in range(n)])
    objs = [None, None]
    if r == 0:
        dist.send_object_list([{"a": 1}, "two"], dst=1)
        sender = "sent"
    else:
        sender = dist.recv_object_list(objs, src=0)
    bits = torch.tensor([6 + r, 3], dtype=torch.int64)
    dist.all_reduce(bits, op=dist.ReduceOp.BXOR)
    both = torch.tensor([True, r == 0])
    dist.all_reduce(both, op=dist.ReduceOp.BAND)
    g = dist.new_group([1], backend="gloo")
    try:
        bad = dist.all_reduce(torch.ones(2), op=dist.ReduceOp.BAND)
    except Exception as e:                                    # what a user catches
        bad = "RuntimeError" if isinstance(e, RuntimeError) else type(e).__name__
    return [[o.tolist() for o in outs], objs if r == 1 else sender, sender if r == 1 else None, bits.tolist(),
            both.tolist(), dist.get_process_group_ranks(dist.group.WORLD), dist.get_global_rank(dist.group.WORLD, 1),
            dist.get_group_rank(dist.group.WORLD, 1), dist.Backend("GLOO"), dist.Backend.NCCL,
            dist.is_gloo_available(), dist.is_backend_available("gloo"),
            isinstance(dist.group.WORLD, dist.ProcessGroup),
            dist.get_process_group_ranks(g) if r == 1 else "n/a", bad]
rec("more_api", more_api)
def zero():
    m = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4), nn.Linear(4, 2))
    with torch.no_grad():
        for k, p in enumerate(m.parameters()):
            p.copy_(torch.cos(torch.arange(p.numel(), dtype=torch.float32) + k).reshape(p.shape))
    dm = DDP(m)
    opt = ZeroRedundancyOptimizer(dm.parameters(), optimizer_class=torch.optim.Adam, lr=0.01)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for i in range(4):
        opt.zero_grad()
        dm(torch.cos(torch.arange(12.0).reshape(4, 3) * (i + 1 + r))).pow(2).sum().backward()
        opt.step()
        sched.step()
    try:
        opt.state_dict()
        early = "no error"
    except RuntimeError:
        early = "RuntimeError"
    opt.consolidate_state_dict(to=0)
    sd = opt.state_dict() if r == 0 else None
    counts = [None] * n
    dist.all_gather_object(counts, sum(len(g["params"]) for g in opt.optim.param_groups))
    return [[round(v, 4) for p in m.parameters() for v in p.flatten().tolist()], early, counts,
            sorted(sd["state"]) if sd else None, sorted(sd["state"][0]) if sd else None,
            [g["lr"] for g in opt.param_groups], len(opt.param_groups[0]["params"])]
rec("zero_redundancy_optimizer", zero)
def compiled_ddp():
    # torch.compile with DDP, both orders (torch's docs show compile(DDP(model))); BatchNorm buffers broadcast
    out = []
    for order in ("compile_of_ddp", "ddp_of_compiled"):
        m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2)).double()
        with torch.no_grad():
            for k, p in enumerate(m.parameters()):
                p.copy_(torch.cos(torch.arange(p.numel(), dtype=torch.float64) + k).reshape(p.shape))
        model = torch.compile(DDP(m), backend="eager") if order == "compile_of_ddp" else \
            DDP(torch.compile(m, backend="eager"))
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        losses = []
        for i in range(5):
            opt.zero_grad()
            x = torch.cos(torch.arange(12.0, dtype=torch.float64).reshape(4, 3) * (i + 1 + r))
            loss = model(x).pow(2).mean()
            loss.backward()
            opt.step()
            losses.append(round(loss.item(), 9))
        out.append({"keys": list(model.state_dict())[:3], "losses": losses,
                    "params": [round(v, 9) for p in m.parameters() for v in p.flatten().tolist()],
                    "running_mean": [round(v, 9) for v in m[1].running_mean.tolist()],
                    "batches": int(m[1].num_batches_tracked)})
    return out
rec("compiled_ddp", compiled_ddp)
if r == 0:
    print(json.dumps(res, sort_keys=True))
dist.destroy_process_group()
