"""The NCCL group's periodic check, on a CPU: a fake ``cupy``/``cupy.cuda.nccl`` (the NCCL calls do
nothing) over real MPI ranks, so that what is checked is the check itself — digests exchanged on the
group's own MPI side channel and compared on the schedule every rank agrees on.

    mpiexec -n 2 python tests/comm/mpi_nccl_check.py same|dtype

``same``: the ranks describe the same collectives: no error through a whole window and the last
partial one.  ``dtype``: rank 0 says float32 where rank 1 says int32: both raise CommError at the
same collective, naming both.  Prints ``OK rank=R`` or ``MISMATCH rank=R: <message>``.
"""
import os
import sys
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fake_cuda  # noqa: E402

from distgraph import comm  # noqa: E402
from distgraph.comm import group, nccl  # noqa: E402
from distgraph.comm.base import CommError  # noqa: E402


class FakeNcclComm:
    def __init__(self, size, uid, rank):
        self.size, self.uid, self.rank = size, uid, rank

    def allReduce(self, *args):
        pass

    def destroy(self):
        pass

    def abort(self):
        pass

    def check_async_error(self):
        pass


def install_fakes():
    cp = fake_cuda.install()
    stream = fake_cuda._Stream(cp)
    stream.ptr = 0
    stream.wait_event = lambda event: None
    cp.cuda.Stream = lambda non_blocking=False: stream
    cp.float32 = np.float32
    cp.zeros = lambda n, dtype=np.float32: cp.asarray(np.zeros(n, dtype))
    fake = SimpleNamespace(get_unique_id=lambda: (1, 2, 3), NcclCommunicator=FakeNcclComm, NCCL_FLOAT32=7,
                           NCCL_SUM=0, get_version=lambda: 22803, available=True)
    cp.cuda.nccl = fake
    sys.modules["cupy.cuda.nccl"] = fake


def main(case):
    comm.init_process_group("mpi")
    install_fakes()
    rank = comm.get_rank()
    pg = nccl.NCCLProcessGroup(group._world, 0)
    assert pg.check_comm is not None and pg.check_every == 64, (pg.check_comm, pg.check_every)
    dtype = np.int32 if case == "dtype" and rank == 1 else np.float32
    try:
        for _ in range(70):            # windows end at #1, 2, 4, ..., 64; #65-70 go out at the end
            pg.begin("all_reduce", np.zeros(8, dtype=dtype))
        pg.finish_check(partial=True)
        print(f"OK rank={rank} seq={pg.seq}", flush=True)
    except CommError as e:
        print(f"MISMATCH rank={rank} seq={pg.seq}: {e}", flush=True)
    pg.shutdown()
    assert pg.check_comm is None
    comm.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
