#!/bin/sh
# Data-parallel scaling on this machine (bench/bench_dist.c): one process with 1 and 2 threads against 2 MPI
# ranks of 1 thread, each rank with the same batch (weak scaling: the global batch grows with the ranks).
# Each configuration runs ROUNDS times, interleaved, and its fastest run is kept (the machine is shared).
# About 30 seconds. Usage: bench/run_dist.sh [BATCH_PER_RANK] [STEPS] [ROUNDS]
set -eu
cd "$(dirname "$0")/.."
b=${1:-64}
s=${2:-10}
rounds=${3:-3}
bin=build/bench_dist
[ -x "$bin" ] || { echo "run_dist: build first (make build)" >&2; exit 1; }
command -v mpiexec >/dev/null || { echo "run_dist: no mpiexec (apt-get install openmpi-bin)" >&2; exit 1; }
export OMP_WAIT_POLICY=PASSIVE OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "# $(build/magna --version)"
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), load $(cut -d' ' -f1-3 /proc/loadavg)"
sps() { echo "$1" | tr ' ' '\n' | sed -n 's/^samples_per_s=//p'; }
# the faster of two key=value lines
best() { if [ -z "$1" ] || [ "$(sps "$2")" -gt "$(sps "$1")" ]; then echo "$2"; else echo "$1"; fi; }
one1="" one2="" two=""
for r in $(seq "$rounds"); do
    one1=$(best "$one1" "$(MAGNA_THREADS=1 OMP_NUM_THREADS=1 $bin --batch "$b" --steps "$s")")
    one2=$(best "$one2" "$(MAGNA_THREADS=2 OMP_NUM_THREADS=2 $bin --batch $((2 * b)) --steps "$s")")
    two=$(best "$two" "$(mpiexec -n 2 -x MAGNA_THREADS=1 -x OMP_NUM_THREADS=1 -x OMP_WAIT_POLICY $bin --batch "$b" --steps "$s")")
done
echo "1 process x 1 thread,  batch $b:      $one1"
echo "1 process x 2 threads, batch $((2 * b)):     $one2"
echo "2 ranks x 1 thread,    batch 2 x $b:  $two"
# weak-scaling efficiency: samples/s of 2 ranks over twice one rank's; and against 1 process x 2 threads
awk -v a="$(sps "$one1")" -v b="$(sps "$one2")" -v c="$(sps "$two")" 'BEGIN {
    printf "scaling efficiency, 2 ranks vs 2 x (1 rank, 1 thread): %.2f\n", c / (2 * a);
    printf "2 ranks x 1 thread vs 1 process x 2 threads (same global batch): %.2f\n", c / b }'
