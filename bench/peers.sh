# peers.sh — what the benchmark scripts share (sourced, not run): the PyTorch peers on this machine, the
# OpenBLAS core type Debian's torch needs, timed runs, and the Markdown table of key=value results.
#
# Debian's torch links Debian's OpenBLAS 0.3.21, which does not recognise AMD Zen 4/5 and falls back to its
# AVX2 kernels unless OPENBLAS_CORETYPE=SkylakeX is set before it loads; on a CPU with AVX-512 the PyTorch
# runs get it (magna sets it for itself), so the peer is at its best. A value the user set is kept.
coretype=""
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -q avx512f /proc/cpuinfo && grep -q avx512bw /proc/cpuinfo; then
    coretype=SkylakeX
fi
# bf16 autocast runs only where the CPU has bf16 arithmetic
bf16=""
grep -q -E "avx512_bf16|amx_bf16" /proc/cpuinfo && bf16=yes

# peer_python NAME: the interpreter of a peer — torch-debian is Debian's python3-torch through /usr/bin/python3,
# torch-pip is pip's torch in the virtual environment .venv at the repository root ($root).
peer_python() {
    if [ "$1" = torch-pip ]; then echo "$root/.venv/bin/python"; else echo /usr/bin/python3; fi
}

have_torch() { [ -x "$1" ] && "$1" -c "import torch" >/dev/null 2>&1; }

# timed NAME COMMAND...: runs the command under /usr/bin/time -v into $out/NAME.log; a failure is reported,
# not fatal, so one broken peer does not hide the others. With rate_key set (the scripts' --repeat), the run's
# RATE_KEY value is also appended to $out/NAME.rates, one line a round, for table's median.
timed() {
    name=$1
    shift
    echo "-- $name" >&2
    if ! /usr/bin/time -v "$@" >"$out/$name.log" 2>&1; then
        echo "$name: failed, see $out/$name.log" >&2
        tail -5 "$out/$name.log" >&2
    elif [ -n "${rate_key:-}" ]; then
        sed -n "s/.*[[:space:]]$rate_key=\([0-9.]*\).*/\1/p; s/^$rate_key=\([0-9.]*\).*/\1/p" "$out/$name.log" |
            tail -1 >>"$out/$name.rates"
    fi
}

# table SUFFIX RATE_KEY SECONDS_KEY QUALITY_KEY: one Markdown row per $out/*_SUFFIX.log from its last key=value
# line and time's peak RSS, with each row's RATE_KEY over the best one's. Where $out/NAME.rates holds several
# rounds (--repeat), the rate is their median, followed by the range, and the ratios are of medians; the other
# columns are the last round's.
table() {
    suffix=$1 rate=$2 secs=$3 quality=$4
    for log in "$out"/*"_$suffix.log"; do
        name=$(basename "$log" .log)
        name=${name%_"$suffix"}
        awk -v name="$name" -v rate="$rate" -v secs="$secs" -v quality="$quality" '
            /Maximum resident set size/ { rss = $NF }
            $0 ~ rate "=" { kv = $0 }
            /not installed/ { missing = 1 }
            END {
                if (missing) { printf "%s\t-\t-\t-\t-\n", name; exit }
                n = split(kv, f, " ")
                for (i = 1; i <= n; i++) { split(f[i], p, "="); v[p[1]] = p[2] }
                if (kv == "") printf "%s\tfailed\t-\t-\t-\n", name
                else printf "%s\t%s\t%s\t%s\t%.0f\t%s\n", name, v[rate], v[secs], v[quality], rss / 1024, range
            }' range="$(rate_range "${log%.log}.rates")" "$log"
    done | awk -F '\t' '
        { name[NR] = $1; r[NR] = $2; sec[NR] = $3; q[NR] = $4; rss[NR] = $5; rng[NR] = $6
          if ($6 != "") { split($6, m, " "); r[NR] = m[1]; rng[NR] = " " m[2]; gsub(/_/, " ", rng[NR]) }
          if (r[NR] + 0 > best) best = r[NR] + 0 }
        END {
            for (i = 1; i <= NR; i++) {
                ratio = (r[i] + 0 > 0 && best > 0) ? sprintf("%.2f", r[i] / best) : "-"
                printf "| %s | %s%s | %s | %s | %s | %s |\n", name[i], r[i], rng[i], ratio, sec[i], q[i], rss[i]
            }
        }'
}

# rate_range FILE: "MEDIAN (MIN-MAX, N runs)" of the numbers in FILE, one a line, when it holds two or more;
# else nothing.
rate_range() {
    [ -f "$1" ] || return 0
    sort -n "$1" | awk '{ v[NR] = $1 }
        END { if (NR < 2) exit
              med = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
              printf "%.0f (%.0f-%.0f,_%d_runs)", med, v[1], v[NR], NR }'
}
