#!/bin/bash
# Slurm batch template for distgraph: copy, adjust the #SBATCH lines, submit with `sbatch slurm_job.sh`.
# Inside the allocation distgraph-run uses srun with the allocation's hosts (one rank per task);
# each rank binds GPU local_rank % GPUs-per-node.
#SBATCH --job-name=distgraph
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --time=01:00:00
set -euo pipefail

SCRIPT=${SCRIPT:-train.py}
distgraph-run -n "${SLURM_NTASKS:-8}" --mpi slurm "$SCRIPT" "$@"
