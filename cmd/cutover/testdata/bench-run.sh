#!/usr/bin/env bash
# Compares a whole `cutover run` of 100 trivial run-command steps with a bash
# script that forks `true` 100 times (fork/exec is the floor), and reports
# the peak memory of the cutover process. Usage: bench-run.sh BIN [ROUNDS]
set -euo pipefail
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
rounds=${2:-15}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

plan=$work/trivial.yaml
{
	printf 'apiVersion: cutover/v1\nkind: Plan\nname: trivial\nversion: 1\nsteps:\n'
	for i in $(seq 1 100); do
		printf '  - id: s%d\n    type: run-command\n    with: {argv: ["true"]}\n' "$i"
	done
} >"$plan"
cat >"$work/fork.sh" <<'SH'
for i in $(seq 1 100); do /bin/true; done
SH

python3 - "$bin" "$plan" "$work" "$rounds" <<'PY'
import os, resource, statistics, subprocess, sys, time
bin, plan, work, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def timed(argv, env=None):
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t
env = dict(os.environ, CUTOVER_JOURNAL_DIR=os.path.join(work, "journal"))
cut, bash = [], []
for _ in range(rounds):          # interleaved, so load affects both alike
    bash.append(timed(["bash", os.path.join(work, "fork.sh")]))
    cut.append(timed([bin, "run", plan], env))
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
b, c = statistics.median(bash), statistics.median(cut)
print(f"bash, 100 forks of true:         median {b*1000:7.1f} ms   (min {min(bash)*1000:.1f})")
print(f"cutover run, 100 run-command:    median {c*1000:7.1f} ms   (min {min(cut)*1000:.1f}; median {c/b:.2f}x bash, min {min(cut)/min(bash):.2f}x; intent records fsynced)")
print(f"peak RSS of any child (cutover): {rss:.1f} MiB")
PY
