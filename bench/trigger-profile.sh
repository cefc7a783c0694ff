#!/usr/bin/env bash
# npm run bench:triggers:profile — where the writer's extra CPU goes under load. The same pgbench
# load as bench:triggers (32 clients, single-row UPDATE by primary key), plain and watched tables
# alternating (ABBA), no leader: for each run, the CPU the whole machine spent per transaction
# (/proc/stat, user and kernel), and perf's samples per 1000 transactions in the backends for the
# trigger (AfterTriggerEndQuery, everything it calls) and for work both tables do identically
# (parsing and planning the UPDATE). Needs perf (software cpu-clock events are enough) and root or
# perf_event_paranoid <= 0 for system-wide sampling.
# Env: PGHOST (127.0.0.1), PGUSER (postgres), PGDATABASE (postgres), PAIRS (2), SECONDS_PER_RUN (10).
set -euo pipefail
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres} PGDATABASE=${PGDATABASE:-postgres}
pairs=${PAIRS:-2}
seconds=${SECONDS_PER_RUN:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
command -v perf >/dev/null || { echo "perf is not installed" >&2; exit 1; }

for script in sql/install.sql sql/changes.sql bench/trigger-tables.sql; do
  psql -q -v ON_ERROR_STOP=1 -f "$root/$script" >/dev/null 2>&1
done
for t in plain watched; do
  printf '\\set id random(1, 100000)\nUPDATE strata_bench_%s SET v = v + 1 WHERE id = :id;\n' "$t" > "$work/$t.sql"
done
inboxes=$(psql -tAc "SELECT string_agg('strata.' || inbox, ', ') FROM (SELECT 'changes_inbox' AS inbox UNION ALL SELECT inbox FROM strata.typed_inboxes()) b")
symbols=(AfterTriggerEndQuery raw_parser parse_analyze_fixedparams pg_plan_queries PostgresMain)

echo "| run | tps | CPU µs per txn (user + kernel) | user µs | kernel µs | samples per 1000 txns: $(printf '%s, ' "${symbols[@]}" | sed 's/, $//') |"
echo "| --- | ---: | ---: | ---: | ---: | --- |"
run() {
  psql -q -c "VACUUM strata_bench_$1" -c "VACUUM $inboxes" -c CHECKPOINT >/dev/null
  pgbench -n -c 32 -j 2 -T 3 -f "$work/$1.sql" >/dev/null 2>&1 # warm-up, not measured
  read -r _ u0 n0 s0 _ _ q0 sq0 _ < <(head -1 /proc/stat)
  txns=$(perf record -q -e cpu-clock -F 999 -a -g -o "$work/perf.data" -- \
    pgbench -n -c 32 -j 2 -T "$seconds" -f "$work/$1.sql" 2>/dev/null | awk '/^number of transactions actually processed/ {print $NF}')
  read -r _ u1 n1 s1 _ _ q1 sq1 _ < <(head -1 /proc/stat)
  hz=$(getconf CLK_TCK)
  user=$(((u1 - u0) + (n1 - n0)))
  kernel=$(((s1 - s0) + (q1 - q0) + (sq1 - sq0)))
  # Samples of postgres processes whose stack holds each symbol (counted once per sample).
  counts=$(perf script -i "$work/perf.data" -F comm,ip,sym 2>/dev/null | awk -v list="${symbols[*]}" '
    function flush() { if (comm == "postgres") for (i = 1; i <= n; i++) if (seen[s[i]]) c[s[i]]++; delete seen }
    BEGIN { n = split(list, s, " ") }
    /^\t/ { for (i = 1; i <= n; i++) if ($2 == s[i]) seen[s[i]] = 1; next }
    /^$/ { next }
    { flush(); comm = $1 }
    END { flush(); for (i = 1; i <= n; i++) printf "%d ", c[s[i]] }')
  awk -v name="$1" -v secs="$seconds" -v t="$txns" -v u="$user" -v k="$kernel" -v hz="$hz" -v counts="$counts" 'BEGIN {
    split(counts, c, " "); per = ""
    for (i = 1; i in c; i++) per = per (i > 1 ? ", " : "") sprintf("%.1f", c[i] * 1000 / t)
    printf "| %s | %d | %.1f | %.1f | %.1f | %s |\n", name, t / secs, (u + k) * 1e6 / hz / t, u * 1e6 / hz / t, k * 1e6 / hz / t, per
  }'
  rm -f "$work/perf.data"
  psql -q -c "TRUNCATE $inboxes" >/dev/null
}
for r in $(seq 1 "$pairs"); do
  if (( r % 2 )); then run plain; run watched; else run watched; run plain; fi
done
echo "Command: npm run bench:triggers:profile (PAIRS=$pairs SECONDS_PER_RUN=$seconds), $(nproc) cores, $(psql -tAc 'SHOW server_version')"
psql -q -c 'SET client_min_messages = warning' -c 'DROP TABLE IF EXISTS strata_bench_plain, strata_bench_watched' >/dev/null
