#!/usr/bin/env bash
# npm run bench:triggers — writer cost of change capture: pgbench single-row UPDATEs at 32 clients
# on a plain table vs the same table watched by strata.watch(), in alternating runs (ABBA order, each
# run after a VACUUM of its table and a CHECKPOINT). During every watched run a psql session does what
# the leading Strata instance does in the database: drain the inbox into the log every 20 ms, read the
# new log rows, record its checkpoint, NOTIFY the other instances, and VACUUM the inbox every second.
# Its cost is counted.
# Each measured run follows an unmeasured warm-up on the same table (throughput ramps up for the first
# seconds after the VACUUM and CHECKPOINT).
# Env: PGHOST (127.0.0.1), PGUSER (postgres), PGDATABASE (postgres), RUNS (10), SECONDS_PER_RUN (10),
# WARMUP_SECONDS (3), LEADER (1), FLOOR (unset). LEADER=0 runs the watched table without the leader
# (its inbox just grows, and is drained after each run): what the writers' triggers cost alone.
# FLOOR=1 measures the floor of any trigger-based capture instead: the second table gets only a
# statement-level AFTER UPDATE trigger with a transition table whose PL/pgSQL function does nothing,
# and no leader runs. FLOOR=insert: the same trigger inserts the changed ids into a one-column
# unlogged table (emptied after each run), the least any capture recording in the writer's
# transaction can do.
set -euo pipefail
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres} PGDATABASE=${PGDATABASE:-postgres}
runs=${RUNS:-10}
seconds=${SECONDS_PER_RUN:-10}
warmup=${WARMUP_SECONDS:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
leader_pid=
cleanup() {
  [ -n "$leader_pid" ] && kill "$leader_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

for script in sql/install.sql sql/changes.sql bench/trigger-tables.sql; do
  psql -q -v ON_ERROR_STOP=1 -f "$root/$script" >/dev/null 2>&1
done
if [ -n "${FLOOR:-}" ]; then
  body='RETURN NULL;'
  [ "$FLOOR" = insert ] && body='INSERT INTO strata_bench_sink SELECT id FROM new_rows; RETURN NULL;'
  psql -q -v ON_ERROR_STOP=1 -v body="$body" >/dev/null <<'SQL'
SET client_min_messages = warning;
SELECT strata.unwatch('strata_bench_watched');
CREATE UNLOGGED TABLE IF NOT EXISTS strata_bench_sink (id int);
SELECT format('CREATE OR REPLACE FUNCTION strata_bench_floor() RETURNS trigger LANGUAGE plpgsql AS %L', 'BEGIN ' || :'body' || ' END') \gexec
CREATE TRIGGER strata_bench_floor AFTER UPDATE ON strata_bench_watched REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION strata_bench_floor();
SQL
fi
for t in plain watched; do
  printf '\\set id random(1, 100000)\nUPDATE strata_bench_%s SET v = v + 1 WHERE id = :id;\n' "$t" > "$work/$t.sql"
done

# Every inbox, as sql/changes.sql made them (the text one and strata.typed_inboxes()).
inboxes=$(psql -tAc "SELECT string_agg('strata.' || inbox, ', ') FROM (SELECT 'changes_inbox' AS inbox UNION ALL SELECT inbox FROM strata.typed_inboxes()) b")
# The leader's database work, as a psql script: drain, read, checkpoint, notify, sleep 20 ms; VACUUM every second.
{
  echo "SELECT coalesce(max(seq), 0) AS seq FROM strata.changes \\gset"
  for i in $(seq 1 $(((seconds + warmup) * 50 + 500))); do
    echo "SELECT strata.drain_inboxes(5000) AS moved \\gset"
    echo "SELECT coalesce(max(seq), :seq) AS seq FROM (SELECT c.seq, k.* FROM (SELECT * FROM strata.changes WHERE seq > :seq ORDER BY seq LIMIT 16) c, unnest(c.type_names, c.entity_keys, c.tenants) AS k) s \\gset"
    echo "UPDATE strata.changes_state SET checkpoint = greatest(checkpoint, :seq);"
    echo "SELECT pg_notify('strata_changes', :'seq');"
    echo "SELECT pg_sleep(0.02);"
    if (( i % 50 == 0 )); then echo "VACUUM (SKIP_LOCKED, TRUNCATE false) $inboxes;"; fi
  done
} > "$work/leader.sql"

run() {
  psql -q -c "VACUUM strata_bench_$1" -c "VACUUM $inboxes" -c CHECKPOINT >/dev/null
  if [ "$1" = watched ] && [ -z "${FLOOR:-}" ] && [ "${LEADER:-1}" != 0 ]; then
    psql -q -o /dev/null -f "$work/leader.sql" >/dev/null 2>&1 &
    leader_pid=$!
  fi
  pgbench -n -c 32 -j 2 -T "$warmup" -f "$work/$1.sql" >/dev/null 2>&1 # warm-up, not measured
  pgbench -n -c 32 -j 2 -T "$seconds" -f "$work/$1.sql" 2>/dev/null | awk '/^tps/ {print int($3)}'
  if [ -n "$leader_pid" ]; then
    kill "$leader_pid" 2>/dev/null || true
    wait "$leader_pid" 2>/dev/null || true
    leader_pid=
  fi
  if [ "$1" = watched ] && [ -z "${FLOOR:-}" ]; then
    psql -q -c 'SELECT strata.drain_inboxes(1000000)' -c 'TRUNCATE strata.changes' >/dev/null
  fi
  if [ "$1" = watched ] && [ -n "${FLOOR:-}" ]; then psql -q -c 'TRUNCATE strata_bench_sink' >/dev/null; fi
}
plain=()
watched=()
for r in $(seq 1 "$runs"); do
  if (( r % 2 )); then
    p=$(run plain); w=$(run watched)
  else
    w=$(run watched); p=$(run plain)
  fi
  plain+=("$p")
  watched+=("$w")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
p=$(median "${plain[@]}")
w=$(median "${watched[@]}")
echo "Command: npm run bench:triggers (RUNS=$runs SECONDS_PER_RUN=$seconds WARMUP_SECONDS=$warmup LEADER=${LEADER:-1}, pgbench -c 32 -j 2, single-row UPDATE, ABBA order)"
echo "Machine: $(nproc) cores, $(psql -tAc 'SHOW server_version'), PostgreSQL on the same host as pgbench"
echo "plain runs:   ${plain[*]}"
echo "watched runs: ${watched[*]}"
echo "| table | median tps | ratio |"
echo "| --- | ---: | ---: |"
echo "| plain | $p | 1.00 |"
label="watched (strata.watch, leader draining)"
[ "${LEADER:-1}" = 0 ] && label="watched (strata.watch, no leader: the triggers alone)"
[ -n "${FLOOR:-}" ] && label="FLOOR: a statement trigger with a transition table that does nothing"
[ "${FLOOR:-}" = insert ] && label="FLOOR=insert: the same trigger, inserting the ids into a one-column unlogged table"
echo "| $label | $w | $(awk -v w="$w" -v p="$p" 'BEGIN {printf "%.2f", w / p}') |"
pairs=()
for i in "${!plain[@]}"; do pairs+=("$(awk -v w="${watched[$i]}" -v p="${plain[$i]}" 'BEGIN {printf "%.3f", w / p}')"); done
echo "pairwise ratios (watched / plain, same round): ${pairs[*]}; median $(median "${pairs[@]}")"
psql -q -c 'SET client_min_messages = warning' -c 'DROP TABLE IF EXISTS strata_bench_plain, strata_bench_watched, strata_bench_sink' \
  -c 'DROP FUNCTION IF EXISTS strata_bench_floor()' >/dev/null
