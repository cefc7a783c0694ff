-- graphql-strata: PostgreSQL tier objects (schema "strata"). Idempotent: safe to run on every start.
-- Version 1. Upgrades add numbered sections guarded by strata.meta('schema_version').

-- Serializes concurrent installs (many instances starting at once); held until this script's
-- transaction ends when it runs as one multi-statement query, as the tier's auto-install does.
SELECT pg_advisory_xact_lock(hashtext('graphql-strata install'));

-- From here on, until this transaction ends (the change listener runs sql/changes.sql in it too),
-- a lock wait gives up after 200 ms and fails the script, which the tier retries later (behind its
-- circuit breaker's backoff). A statement waiting for a lock on a table (behind pg_dump, a report, a
-- long DELETE) queues every later query on that table, each holding a pool connection; 200 ms bounds
-- that queue to twice a lookup's timeout, leaves the queries in flight time to finish, and fails
-- before an invalidation's 1 s timeout, which then logs this script's own error. Set after the
-- advisory lock, so that instances starting together still wait their turn. Run statement by
-- statement (psql without --single-transaction), it has no effect.
SELECT set_config('lock_timeout', '200ms', true);

CREATE SCHEMA IF NOT EXISTS strata;

-- Strata's statements run at READ COMMITTED. put waits for the epoch row lock and then reads the
-- stamps committed meanwhile, which only a snapshot taken after the wait sees; concurrent upserts of
-- one stamp (or of the change log's checkpoint) wait for each other rather than fail with
-- serialization_failure; and a drain takes no predicate locks, which at SERIALIZABLE would make
-- writers' transactions fail. At REPEATABLE READ or SERIALIZABLE (say a default_transaction_isolation
-- set on the database, the role or the pool), what orders writes against invalidations, the drain
-- and the change log's bookkeeping refuse to run, with this error (SQLSTATE SR001), rather than
-- run wrongly; so does this script (next statement), so a misconfigured pool fails at startup.
-- Callers compare the setting themselves and call this only when it differs (one call less each).
-- READ UNCOMMITTED behaves as READ COMMITTED in PostgreSQL.
CREATE OR REPLACE FUNCTION strata.read_committed() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('transaction_isolation') NOT IN ('read committed', 'read uncommitted') THEN
    RAISE EXCEPTION USING ERRCODE = 'SR001', MESSAGE = format(
      'graphql-strata: this transaction runs at %s (default_transaction_isolation is %s); Strata''s statements need read committed: give Strata a pool of its own, created with options: ''-c default_transaction_isolation=read\ committed''',
      current_setting('transaction_isolation'), current_setting('default_transaction_isolation'));
  END IF;
  RETURN true;
END
$$;
SELECT strata.read_committed();

CREATE TABLE IF NOT EXISTS strata.meta (
  key text PRIMARY KEY,
  value text NOT NULL
);
-- The row writes lock FOR SHARE and invalidations FOR UPDATE: it orders them, so a write from an
-- execution that began before an invalidation is either deleted by it or refused after it.
INSERT INTO strata.meta (key, value) VALUES ('epoch', '0') ON CONFLICT (key) DO NOTHING;

-- UNLOGGED: no WAL (a cache survives a crash empty, which is fine); fillfactor < 100 and no index
-- on expires_at keep upserts HOT (in place).
CREATE UNLOGGED TABLE IF NOT EXISTS strata.entries (
  key text PRIMARY KEY,
  tenant text,
  operation_name text,
  tags text[] NOT NULL,
  size integer NOT NULL,
  created_at bigint NOT NULL,   -- epoch milliseconds
  expires_at bigint NOT NULL,   -- epoch milliseconds
  value text NOT NULL           -- the serialized entry (magic line, metadata line, body)
) WITH (fillfactor = 70);

-- Created only when missing: CREATE INDEX IF NOT EXISTS takes a SHARE lock on the table (it waits for
-- writers, and queues every later query) before it finds the index exists.
DO $$
BEGIN
  IF to_regclass('strata.entries_tags') IS NULL THEN
    CREATE INDEX IF NOT EXISTS entries_tags ON strata.entries USING gin (tags);
  END IF;
  IF to_regclass('strata.entries_tenant') IS NULL THEN
    CREATE INDEX IF NOT EXISTS entries_tenant ON strata.entries (tenant);
  END IF;
END
$$;

-- When each tag was last invalidated: writes that began earlier are refused. Tag '' stamps a full clear,
-- '~t' || tenant a tenant's clear, and '~' a clear of tenancy-off entries (tags never start with '~').
CREATE UNLOGGED TABLE IF NOT EXISTS strata.invalidations (
  tag text PRIMARY KEY,
  at bigint NOT NULL
);

-- lz4 compresses large bodies faster than the default pglz, where the server was built with it (lz4
-- is then a value of default_toast_compression). Only while the column is not lz4 yet: the ALTER takes
-- an ACCESS EXCLUSIVE lock on the table. Any failure (PostgreSQL 13 and older have no column
-- compression; the lock wait timed out) leaves the column as it is, and the next install tries again.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_attribute
             WHERE attrelid = 'strata.entries'::regclass AND attname = 'value' AND attcompression <> 'l')
     AND EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
    ALTER TABLE strata.entries ALTER COLUMN value SET COMPRESSION lz4;
  END IF;
EXCEPTION WHEN others THEN
  NULL;
END
$$;

CREATE OR REPLACE FUNCTION strata.put(
  p_key text, p_tenant text, p_operation_name text, p_tags text[], p_size integer,
  p_created_at bigint, p_expires_at bigint, p_value text, p_not_before bigint
) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('transaction_isolation') NOT IN ('read committed', 'read uncommitted') THEN
    PERFORM strata.read_committed();
  END IF;
  PERFORM 1 FROM strata.meta WHERE key = 'epoch' FOR SHARE;
  IF p_not_before > 0 AND EXISTS (
    SELECT 1 FROM strata.invalidations
    WHERE tag = ANY (p_tags || ARRAY['', CASE WHEN p_tenant IS NULL THEN '~' ELSE '~t' || p_tenant END])
      AND at >= p_not_before
  ) THEN
    RETURN false;
  END IF;
  INSERT INTO strata.entries (key, tenant, operation_name, tags, size, created_at, expires_at, value)
  VALUES (p_key, p_tenant, p_operation_name, p_tags, p_size, p_created_at, p_expires_at, p_value)
  ON CONFLICT (key) DO UPDATE SET
    tenant = excluded.tenant, operation_name = excluded.operation_name, tags = excluded.tags,
    size = excluded.size, created_at = excluded.created_at, expires_at = excluded.expires_at,
    value = excluded.value;
  RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION strata.invalidate(p_tags text[], p_at bigint) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  removed integer;
BEGIN
  IF current_setting('transaction_isolation') NOT IN ('read committed', 'read uncommitted') THEN
    PERFORM strata.read_committed();
  END IF;
  PERFORM 1 FROM strata.meta WHERE key = 'epoch' FOR UPDATE;
  INSERT INTO strata.invalidations (tag, at) SELECT DISTINCT unnest(p_tags), p_at
  ON CONFLICT (tag) DO UPDATE SET at = greatest(strata.invalidations.at, excluded.at);
  DELETE FROM strata.entries WHERE tags && p_tags;
  GET DIAGNOSTICS removed = ROW_COUNT;
  RETURN removed;
END
$$;

-- Refuses the writes of executions that began before p_at: of every entry (p_all), otherwise of
-- p_tenant's entries (NULL: tenancy-off entries). Removes nothing; the lock waits for writes in flight,
-- so each is either committed before the stamp (and found by a listing after it) or refused by it.
CREATE OR REPLACE FUNCTION strata.fence(p_all boolean, p_tenant text, p_at bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('transaction_isolation') NOT IN ('read committed', 'read uncommitted') THEN
    PERFORM strata.read_committed();
  END IF;
  PERFORM 1 FROM strata.meta WHERE key = 'epoch' FOR UPDATE;
  INSERT INTO strata.invalidations (tag, at)
  VALUES (CASE WHEN p_all THEN '' WHEN p_tenant IS NULL THEN '~' ELSE '~t' || p_tenant END, p_at)
  ON CONFLICT (tag) DO UPDATE SET at = greatest(strata.invalidations.at, excluded.at);
END
$$;

-- p_all: every entry; otherwise the entries of p_tenant (NULL: tenancy-off entries).
CREATE OR REPLACE FUNCTION strata.clear(p_all boolean, p_tenant text, p_at bigint) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  removed integer;
BEGIN
  PERFORM strata.fence(p_all, p_tenant, p_at);
  IF p_all THEN
    DELETE FROM strata.entries;
  ELSE
    DELETE FROM strata.entries WHERE tenant IS NOT DISTINCT FROM p_tenant;
  END IF;
  GET DIAGNOSTICS removed = ROW_COUNT;
  RETURN removed;
END
$$;

INSERT INTO strata.meta (key, value) VALUES ('schema_version', '1')
ON CONFLICT (key) DO UPDATE SET value = excluded.value;
