#!/usr/bin/env bash
# npm run bench:triggers — writer cost of change capture: pgbench single-row UPDATEs at 32 clients
# on a plain table vs the same table watched by strata.watch(), alternating runs, median tps each.
# Env: PGHOST (127.0.0.1), PGUSER (postgres), PGDATABASE (postgres), RUNS (5), SECONDS_PER_RUN (10).
set -euo pipefail
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres} PGDATABASE=${PGDATABASE:-postgres}
runs=${RUNS:-5}
seconds=${SECONDS_PER_RUN:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

psql -q -v ON_ERROR_STOP=1 -f "$root/sql/install.sql" >/dev/null 2>&1
psql -q -v ON_ERROR_STOP=1 -f "$root/sql/changes.sql" >/dev/null 2>&1
psql -q -v ON_ERROR_STOP=1 >/dev/null 2>&1 <<'SQL'
DROP TABLE IF EXISTS strata_bench_plain, strata_bench_watched;
CREATE TABLE strata_bench_plain (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
CREATE TABLE strata_bench_watched (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
INSERT INTO strata_bench_plain SELECT g FROM generate_series(1, 100000) g;
INSERT INTO strata_bench_watched SELECT g FROM generate_series(1, 100000) g;
SELECT strata.watch('strata_bench_watched', 'Bench', 'id');
VACUUM ANALYZE strata_bench_plain;
VACUUM ANALYZE strata_bench_watched;
SQL
for t in plain watched; do
  printf '\\set id random(1, 100000)\nUPDATE strata_bench_%s SET v = v + 1 WHERE id = :id;\n' "$t" > "$work/$t.sql"
done
tps() { pgbench -n -c 32 -j 2 -T "$seconds" -f "$work/$1.sql" 2>/dev/null | awk '/^tps/ {print int($3)}'; }
plain=()
watched=()
for _ in $(seq 1 "$runs"); do
  plain+=("$(tps plain)")
  watched+=("$(tps watched)")
  psql -q -c 'TRUNCATE strata.changes' >/dev/null
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
p=$(median "${plain[@]}")
w=$(median "${watched[@]}")
echo "Command: npm run bench:triggers (RUNS=$runs SECONDS_PER_RUN=$seconds, pgbench -c 32 -j 2, single-row UPDATE)"
echo "Machine: $(nproc) cores, $(psql -tAc 'SHOW server_version'), PostgreSQL on the same host as pgbench"
echo "plain runs:   ${plain[*]}"
echo "watched runs: ${watched[*]}"
echo "| table | median tps | ratio |"
echo "| --- | ---: | ---: |"
echo "| plain | $p | 1.00 |"
echo "| watched (strata.watch) | $w | $(awk -v w="$w" -v p="$p" 'BEGIN {printf "%.2f", w / p}') |"
pairs=()
for i in "${!plain[@]}"; do pairs+=("$(awk -v w="${watched[$i]}" -v p="${plain[$i]}" 'BEGIN {printf "%.3f", w / p}')"); done
echo "pairwise ratios (each watched run / the plain run just before it): ${pairs[*]}; median $(median "${pairs[@]}")"
psql -q -c 'DROP TABLE strata_bench_plain, strata_bench_watched' >/dev/null
