"""Process groups and collectives over MPI (mpi4py), NCCL (CuPy) and a single-process group."""
