#!/usr/bin/env bash
# Two nodes x 8 GPUs under SLURM. Submit with: sbatch recipes/accelerate/multi-node-slurm.sh
#SBATCH --job-name=mlmkit-pretrain
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --signal=B:TERM@120
set -euo pipefail
head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
# one launcher per node; SIGTERM 120 s before the time limit makes mlmkit checkpoint and exit,
# and `--resume auto` continues from the latest checkpoint when the job is requeued
srun mlmkit pretrain --recipe demo \
  --num-processes $((SLURM_NNODES * 8)) --num-machines "$SLURM_NNODES" --machine-rank "$SLURM_NODEID" \
  --main-process-ip "$head_node" --main-process-port 29500 \
  --accelerate-config recipes/accelerate/ddp.yaml --resume auto \
  output.dir=runs/slurm-$SLURM_JOB_NAME train.checkpoint_minutes=30 train.mixed_precision=bf16
