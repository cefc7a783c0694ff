-- The two tables of the writer-cost benchmarks (bench/pgbench-triggers.sh, bench/trigger-instructions.sh):
-- the same 100k rows, one of them under strata.watch. Run after sql/install.sql and sql/changes.sql.
DROP TABLE IF EXISTS strata_bench_plain, strata_bench_watched;
CREATE TABLE strata_bench_plain (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
CREATE TABLE strata_bench_watched (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
INSERT INTO strata_bench_plain SELECT g FROM generate_series(1, 100000) g;
INSERT INTO strata_bench_watched SELECT g FROM generate_series(1, 100000) g;
SELECT strata.watch('strata_bench_watched', 'Bench', 'id');
VACUUM ANALYZE strata_bench_plain;
VACUUM ANALYZE strata_bench_watched;
