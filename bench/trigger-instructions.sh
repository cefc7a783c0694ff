#!/usr/bin/env bash
# npm run bench:triggers:instructions — the writer's cost of change capture in CPU instructions, which
# (unlike tps on a shared 2-core machine) repeat exactly from run to run. A throwaway cluster runs
# single-user (`postgres --single`) under `valgrind --tool=callgrind`: UPDATES single-row UPDATEs by
# primary key on a plain table, then the same on a table under strata.watch(), each from the same
# pristine copy of the data directory. Prints instructions per UPDATE, net of startup, and what the
# leader's strata.drain_inboxes() costs per change it moves from the inbox into the log, in the small
# drains of steady load and in the large ones after a bulk load.
# Needs valgrind and the PostgreSQL server binaries (pg_config --bindir, or PG_BIN). Run as root it runs
# the cluster as the postgres user.
# Env: PG_BIN, UPDATES (2000).
set -euo pipefail
bin=${PG_BIN:-$(pg_config --bindir)}
updates=${UPDATES:-2000}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$1"; else bash -c "$1"; fi; }
cleanup() { as_pg "'$bin/pg_ctl' -D '$work/pristine' -m immediate stop" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
chmod 777 "$work"
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }

as_pg "'$bin/initdb' -D '$work/pristine' -A trust -U postgres" >/dev/null
as_pg "'$bin/pg_ctl' -D '$work/pristine' -o \"-p 5499 -k '$work' -c listen_addresses=''\" -l '$work/log' -w start" >/dev/null
psql_t() { psql -h "$work" -p 5499 -U postgres -d postgres -q -v ON_ERROR_STOP=1 -o /dev/null "$@"; }
for script in sql/install.sql sql/changes.sql bench/trigger-tables.sql; do psql_t -f "$root/$script" 2>/dev/null; done
psql_t -c CHECKPOINT
as_pg "'$bin/pg_ctl' -D '$work/pristine' -w stop" >/dev/null

# The same pseudo-random ids for both tables.
echo "SELECT 1;" > "$work/none.sql"
for t in plain watched; do
  awk -v n="$updates" -v t="$t" 'BEGIN { srand(1); for (i = 0; i < n; i++) printf "UPDATE strata_bench_%s SET v = v + 1 WHERE id = %d;\n", t, 1 + int(rand() * 100000) }' > "$work/$t.sql"
done
# The leader's side (strata_bench_watched is keyed by an integer, so its writers record into
# strata.changes_inbox_int4):
#  - ticks: 50 drains of 200 changes each and one VACUUM of the inbox, as the leader does in a second
#    of 10k changes/s (it drains every 20 ms and vacuums every second);
#  - bulk: 100k changes waiting at once, moved by 20 drains of 5000.
tick="INSERT INTO strata.changes_inbox_int4 SELECT 'Bench', g FROM generate_series(1, 200) g;"
{ for _ in $(seq 1 50); do echo "$tick"; done; } > "$work/ticks_fill.sql"
{ for _ in $(seq 1 50); do echo "$tick"; echo "SELECT strata.drain_inboxes(5000);"; done
  echo "VACUUM strata.changes_inbox_int4;"; } > "$work/ticks.sql"
bulk="INSERT INTO strata.changes_inbox_int4 SELECT 'Bench', g FROM generate_series(1, 100000) g;"
echo "$bulk" > "$work/bulk_fill.sql"
{ echo "$bulk"; for _ in $(seq 1 20); do echo "SELECT strata.drain_inboxes(5000);"; done; } > "$work/bulk.sql"
chmod 644 "$work"/*.sql
instructions() {
  rm -rf "$work/data" && cp -a "$work/pristine" "$work/data"
  as_pg "valgrind --tool=callgrind --callgrind-out-file=/dev/null '$bin/postgres' --single -D '$work/data' -c synchronous_commit=off postgres < '$work/$1.sql' > /dev/null 2> '$work/$1.err'"
  if grep -q 'ERROR:' "$work/$1.err"; then grep -m 3 -A 3 'ERROR:' "$work/$1.err" >&2; exit 1; fi
  grep -o 'Collected : [0-9]*' "$work/$1.err" | awk '{print $3}'
}
base=$(instructions none)
plain=$(( ($(instructions plain) - base) / updates ))
watched=$(( ($(instructions watched) - base) / updates ))
ticks=$(( ($(instructions ticks) - $(instructions ticks_fill)) / 10000 ))
bulk=$(( ($(instructions bulk) - $(instructions bulk_fill)) / 100000 ))
echo "Command: npm run bench:triggers:instructions (UPDATES=$updates, postgres --single under callgrind, $("$bin/postgres" --version))"
echo "| table | instructions per UPDATE | ratio |"
echo "| --- | ---: | ---: |"
echo "| plain | $plain | 1.00 |"
echo "| watched (strata.watch) | $watched | $(awk -v w="$watched" -v p="$plain" 'BEGIN {printf "%.3f", w / p}') |"
echo "Leader, instructions per change moved by strata.drain_inboxes: $ticks in drains of 200 with a VACUUM every 50 (a second at 10k changes/s); $bulk in drains of 5000 (100k waiting)"
