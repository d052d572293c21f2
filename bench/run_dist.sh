#!/bin/sh
# Data-parallel scaling on this machine (bench/bench_dist.c): one process with 1 and 2 threads against 2 MPI
# ranks of 1 thread, each rank with the same batch (weak scaling: the global batch grows with the ranks).
# About 20 seconds. Usage: bench/run_dist.sh [BATCH_PER_RANK] [STEPS]
set -eu
cd "$(dirname "$0")/.."
b=${1:-64}
s=${2:-20}
bin=build/bench_dist
[ -x "$bin" ] || { echo "run_dist: build first (make build)" >&2; exit 1; }
command -v mpiexec >/dev/null || { echo "run_dist: no mpiexec (apt-get install openmpi-bin)" >&2; exit 1; }
export OMP_WAIT_POLICY=PASSIVE OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "# $(build/magna --version)"
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
one1=$(MAGNA_THREADS=1 OMP_NUM_THREADS=1 $bin --batch "$b" --steps "$s")
echo "1 process x 1 thread,  batch $b:      $one1"
one2=$(MAGNA_THREADS=2 OMP_NUM_THREADS=2 $bin --batch $((2 * b)) --steps "$s")
echo "1 process x 2 threads, batch $((2 * b)):     $one2"
two=$(mpiexec -n 2 -x MAGNA_THREADS=1 -x OMP_NUM_THREADS=1 -x OMP_WAIT_POLICY $bin --batch "$b" --steps "$s")
echo "2 ranks x 1 thread,    batch 2 x $b:  $two"
# weak-scaling efficiency: samples/s of 2 ranks over twice one rank's; and against 1 process x 2 threads
sps() { echo "$1" | tr ' ' '\n' | sed -n 's/^samples_per_s=//p'; }
awk -v a="$(sps "$one1")" -v b="$(sps "$one2")" -v c="$(sps "$two")" 'BEGIN {
    printf "scaling efficiency, 2 ranks vs 2 x (1 rank, 1 thread): %.2f\n", c / (2 * a);
    printf "2 ranks x 1 thread vs 1 process x 2 threads (same global batch): %.2f\n", c / b }'
