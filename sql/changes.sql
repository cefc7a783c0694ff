-- graphql-strata: database change capture (schema "strata"). Idempotent; run after install.sql.
-- Version 3.

SELECT pg_advisory_xact_lock(hashtext('graphql-strata install'));
SELECT strata.read_committed(); -- from install.sql: Strata's statements need READ COMMITTED

DO $$
BEGIN
  IF current_setting('server_version_num')::int < 140000 THEN
    RAISE EXCEPTION 'graphql-strata change capture needs PostgreSQL 14 or later (CREATE OR REPLACE TRIGGER), this is %',
      current_setting('server_version');
  END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS strata;

-- Writers' triggers append the changed keys here, inside the writer's transaction, and nothing else:
-- no sequence (one hot counter for every writer) and no index (one hot right-most page). UNLOGGED: no
-- WAL either. The leading instance moves committed rows into strata.changes every few milliseconds
-- (strata.drain), so the table stays small. vacuum_truncate is off, so that routine vacuuming never
-- takes a lock writers would wait for; the leader truncates it only when a bulk load left it large.
-- A NULL key value is recorded as NULL (a type-wide change), never refused: the writer's statement
-- must not fail because of Strata.
CREATE UNLOGGED TABLE IF NOT EXISTS strata.changes_inbox (
  type_name text NOT NULL,
  entity_key text,
  tenant text
) WITH (vacuum_truncate = false, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000);

-- Tables keyed by one column of a common type, without a tenant column, record into an inbox of that
-- type instead: the writer stores the key as it is (no conversion to text, no tenant column, no
-- constraint to check), and the drain converts a batch at once. Each column a writer's INSERT fills
-- and each conversion cost it about 2,000 CPU instructions per statement (bench/RESULTS.md).
-- This list is the only one: watch, the drain, the upgrade and the leader's VACUUM find the typed
-- inboxes (strata.changes_inbox_*) and their key types in the catalog.
DO $$
DECLARE
  box record;
BEGIN
  FOR box IN SELECT * FROM (VALUES ('int4', 'integer'), ('int8', 'bigint'), ('text', 'text'), ('uuid', 'uuid'))
    AS b (suffix, key_type) LOOP
    EXECUTE format('CREATE UNLOGGED TABLE IF NOT EXISTS strata.%I (type_name text, entity_key %s)
      WITH (vacuum_truncate = false, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000)',
      'changes_inbox_' || box.suffix, box.key_type);
  END LOOP;
END
$$;

-- The typed inboxes and their key types.
CREATE OR REPLACE FUNCTION strata.typed_inboxes() RETURNS TABLE (inbox text, key_type regtype)
LANGUAGE sql STABLE AS $$
  SELECT c.relname::text, a.atttypid::regtype
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'entity_key'
  WHERE c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = 'strata.changes_inbox'::regclass)
    AND c.relname LIKE 'changes\_inbox\_%'
  ORDER BY 1
$$;

-- The change log, in commit order: one row per drain, holding the changes it moved as parallel
-- arrays (one row per change cost a drain 2.4 times as much, mostly in index and tuple overhead).
-- Written only by strata.drain, read by every instance from where it left off. UNLOGGED: a crash
-- empties it, which listeners detect (the epoch row below disappears with it) and answer by flushing
-- the cache. The arrays are stored uncompressed: compressing them (pglz) made a drain a fifth dearer,
-- for a table whose rows are pruned after minutes.
CREATE OR REPLACE FUNCTION strata.create_log() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF to_regclass('strata.changes') IS NOT NULL THEN
    RETURN; -- version 1's log is replaced at the end of this script
  END IF;
  CREATE UNLOGGED TABLE strata.changes (
    seq bigserial NOT NULL,
    type_names text[] NOT NULL,
    entity_keys text[] NOT NULL,   -- key column values as text, joined with ':' (composite keys)
    tenants text[] NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
  );
  ALTER TABLE strata.changes ALTER COLUMN type_names SET STORAGE EXTERNAL,
    ALTER COLUMN entity_keys SET STORAGE EXTERNAL, ALTER COLUMN tenants SET STORAGE EXTERNAL;
  CREATE UNIQUE INDEX changes_seq_key ON strata.changes (seq);
END
$$;
SELECT strata.create_log();

-- Moves up to p_limit committed rows from the inboxes into the log, in one transaction, and returns
-- how many; -1 when another drain holds the lock (it takes those rows). Each inbox that had rows
-- becomes one log row. Keys become text here (a NULL key stays NULL).
-- Nothing is moved twice or lost: only a drain deletes inbox rows (one at a time, under the lock),
-- and it deletes exactly the rows it read. When all that an inbox holds fits in the budget (always,
-- but after a bulk load), one statement aggregates it and deletes every row it can see: under the
-- same snapshot, so exactly the rows it read, with no RETURNING or row ids (half the cost per change
-- of deleting by row id; see bench/RESULTS.md). Otherwise the drain reads the first rows and deletes
-- those by row id, in a statement planned for that list (a plan cached while the inbox was small
-- would compare every row with every id). Rows a writer commits meanwhile wait for the next drain.
-- At READ COMMITTED only (strata.read_committed): each statement's snapshot is taken after the lock,
-- so it sees what the previous drain committed, and a drain takes no predicate locks that could fail
-- the writers' SERIALIZABLE transactions.
-- Statements are static (plans cached) but that DELETE, generated at install: the text inbox first,
-- then the typed ones. Only inboxes that have rows are drained: each statement costs about 90,000
-- CPU instructions even when it finds nothing.
DO $$
DECLARE
  box record;
  steps text := '';
  probes text[] := '{}';
BEGIN
  FOR box IN
    SELECT 'changes_inbox' AS inbox, 'entity_key' AS key_text, 'array_agg(tenant)' AS tenants
    UNION ALL
    SELECT t.inbox, CASE WHEN t.key_type = 'text'::regtype THEN 'entity_key' ELSE 'entity_key::text' END,
           'array_fill(NULL::text, ARRAY[count(*)::int])'
    FROM strata.typed_inboxes() t
  LOOP
    probes := probes || format('EXISTS (SELECT FROM strata.%I)', box.inbox);
    steps := steps || format($step$
    IF waiting[%4$s] AND moved < p_limit THEN
      WITH batch AS (
        SELECT array_agg(type_name) AS types, array_agg(%2$s) AS keys, %3$s AS tenants, count(*) AS n
        FROM (SELECT * FROM strata.%1$I LIMIT p_limit - moved + 1::bigint) r
      ), emptied AS (
        DELETE FROM strata.%1$I WHERE (SELECT n FROM batch) <= p_limit - moved
      ), logged AS (
        INSERT INTO strata.changes (type_names, entity_keys, tenants)
        SELECT types, keys, tenants FROM batch WHERE n BETWEEN 1 AND p_limit - moved
      )
      SELECT n INTO waiting_rows FROM batch;
      IF waiting_rows <= p_limit - moved THEN
        moved := moved + waiting_rows;
      ELSE
        SELECT array_agg(ctid), min(ctid), max(ctid), array_agg(type_name), array_agg(%2$s), %3$s
        INTO bulk_ids, first_id, last_id, bulk_types, bulk_keys, bulk_tenants
        FROM (SELECT ctid, * FROM strata.%1$I LIMIT p_limit - moved) r;
        EXECUTE 'DELETE FROM strata.%1$I WHERE ctid BETWEEN $1 AND $2 AND ctid = ANY ($3)'
        USING first_id, last_id, bulk_ids;
        INSERT INTO strata.changes (type_names, entity_keys, tenants) VALUES (bulk_types, bulk_keys, bulk_tenants);
        moved := moved + cardinality(bulk_types);
      END IF;
    END IF;$step$, box.inbox, box.key_text, box.tenants, cardinality(probes));
  END LOOP;
  EXECUTE format($f$
CREATE OR REPLACE FUNCTION strata.drain_inboxes(p_limit integer DEFAULT 10000) RETURNS integer
LANGUAGE plpgsql AS $body$
DECLARE
  moved integer := 0;
  waiting boolean[];
  waiting_rows bigint;
  bulk_ids tid[];
  first_id tid;
  last_id tid;
  bulk_types text[];
  bulk_keys text[];
  bulk_tenants text[];
BEGIN
  IF current_setting('transaction_isolation') NOT IN ('read committed', 'read uncommitted') THEN
    PERFORM strata.read_committed();
  END IF;
  IF NOT pg_try_advisory_xact_lock(hashtext('graphql-strata drain strata.changes_inbox')) THEN
    RETURN -1;
  END IF;
  waiting := ARRAY[%s];%s
  RETURN moved;
END
$body$ $f$, array_to_string(probes, ', '), steps);
END
$$;

-- What version 2 instances call. Version 3 instances call strata.drain_inboxes, which no older script
-- replaces: a version 2 instance that reinstalls during a rolling deploy puts back its own
-- strata.drain (the text inbox only), and the version 3 leader still drains every inbox.
CREATE OR REPLACE FUNCTION strata.drain(p_limit integer DEFAULT 10000) RETURNS integer
LANGUAGE sql AS $$ SELECT strata.drain_inboxes(p_limit) $$;

-- One row: the log's identity (a new epoch after a crash) and how far pruning has gone.
CREATE UNLOGGED TABLE IF NOT EXISTS strata.changes_state (
  one boolean PRIMARY KEY DEFAULT true CHECK (one),
  epoch text NOT NULL,
  pruned_through bigint NOT NULL DEFAULT 0,
  checkpoint bigint NOT NULL DEFAULT 0   -- everything up to here was applied to the shared tiers
);

-- Starts a new epoch when there is none (a fresh install, or a crash emptied the state row). Its
-- checkpoint is where the log's sequence stands: on PostgreSQL 14 the sequence is logged and keeps
-- counting after a crash, and a reader starting from 0 would wait on every number below as a hole.
-- The drain lock guarantees no drain is numbering rows meanwhile: every later one numbers them
-- above. Readers flush on a new epoch, so nothing numbered before it needs applying.
CREATE OR REPLACE FUNCTION strata.start_epoch() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('graphql-strata drain strata.changes_inbox'));
  INSERT INTO strata.changes_state (epoch, checkpoint)
  VALUES (md5(random()::text || clock_timestamp()::text),
          coalesce(pg_sequence_last_value('strata.changes_seq_seq'), 0))
  ON CONFLICT (one) DO NOTHING;
END
$$;
SELECT strata.start_epoch();

CREATE TABLE IF NOT EXISTS strata.watched (
  table_name regclass PRIMARY KEY,
  type_name text NOT NULL,
  key_columns text[] NOT NULL,
  tenant_column text
);

-- The schema of another Strata (another application's) whose triggers are on p_table, if any.
-- Trigger names are the same in every Strata schema, so a table is watched by one of them only.
CREATE OR REPLACE FUNCTION strata.watched_elsewhere(p_table regclass) RETURNS name LANGUAGE sql STABLE AS $$
  SELECT n.nspname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE t.tgrelid = p_table AND NOT t.tgisinternal AND t.tgname LIKE 'strata\_changes\_%'
    AND p.pronamespace <> (SELECT relnamespace FROM pg_class WHERE oid = 'strata.watched'::regclass)
  LIMIT 1
$$;

-- Watches a table: every committed INSERT, UPDATE and DELETE records the changed rows' keys in an
-- inbox: the one of the key's type for a single integer, bigint, text, varchar or uuid key, no
-- tenant column and no partitions; strata.changes_inbox (keys as text) otherwise. Composite keys
-- are joined with ':' (NULL parts skipped). Statement-level triggers read the
-- transition tables: new keys for INSERT and UPDATE, old keys for DELETE. An UPDATE that changes a key must record the old key too:
--   * on a plain table, a row-level trigger does, with a WHEN clause comparing the OLD and NEW keys so
--     it calls nothing unless a key changed. It is declared UPDATE OF <key columns>, which spares
--     every other UPDATE even the comparison, unless the table has BEFORE UPDATE row triggers (they
--     can change a key the UPDATE does not name); one created later is caught by an event trigger;
--   * on a partitioned table (where moving a row to another partition fires no row-level UPDATE
--     trigger), the statement trigger also reads the old rows and records keys that are gone.
-- A TRUNCATE (which has no transition tables) records the key '*' (strata.truncate_trigger): every
-- entry in which an entity of the type appears is invalidated, and the type's lists.
-- Triggers are created with CREATE OR REPLACE, which locks writers out only for the moment it takes.
-- A table another Strata schema watches is refused (duplicate_object): its triggers have the same names.
-- Example: SELECT strata.watch('public.post', 'Post', 'id');
--          SELECT strata.watch('public.line', 'Line', 'order_id,position', 'tenant_id');
CREATE OR REPLACE FUNCTION strata.watch(
  p_table regclass, p_type_name text, p_key_columns text, p_tenant_column text DEFAULT NULL
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  cols text[] := string_to_array(replace(p_key_columns, ' ', ''), ',');
  partitioned boolean := (SELECT relkind = 'p' FROM pg_class WHERE oid = p_table);
  key_expr text;
  old_key_expr text;
  same_key text;
  tenant_expr text := 'NULL::text';
  old_tenant_expr text := 'NULL::text';
  fn text := 'record_' || p_table::oid;
  col text;
  inbox text := 'changes_inbox';
  cells text;
  old_cells text;
  other name := strata.watched_elsewhere(p_table);
BEGIN
  IF p_type_name !~ '^[_A-Za-z][_0-9A-Za-z]*$' THEN
    RAISE EXCEPTION 'strata.watch: % is not a GraphQL type name', p_type_name;
  END IF;
  IF other IS NOT NULL THEN
    RAISE EXCEPTION USING ERRCODE = 'duplicate_object', MESSAGE = format(
      'strata.watch: %s is watched by the Strata schema %I already (its triggers strata_changes_*), and a table can be watched by one Strata schema only: SELECT %I.unwatch(%L) first, or read its changes from %I',
      p_table, other, other, p_table::text, other);
  END IF;
  FOREACH col IN ARRAY cols LOOP
    PERFORM 1 FROM pg_attribute WHERE attrelid = p_table AND attname = col AND attnum > 0 AND NOT attisdropped;
    IF NOT FOUND THEN RAISE EXCEPTION 'strata.watch: % has no column %', p_table, col; END IF;
  END LOOP;
  SELECT string_agg(format('r.%I::text', c), ', ') INTO key_expr FROM unnest(cols) AS c;
  SELECT string_agg(format('OLD.%I::text', c), ', ') INTO old_key_expr FROM unnest(cols) AS c;
  SELECT string_agg(format('n.%I IS NOT DISTINCT FROM r.%I', c, c), ' AND ') INTO same_key FROM unnest(cols) AS c;
  -- Partitioned tables keep keys as text: without a key trigger nothing stops ALTER COLUMN ... TYPE
  -- on their key, which a typed inbox would then refuse.
  IF array_length(cols, 1) = 1 AND p_tenant_column IS NULL AND NOT partitioned THEN
    SELECT coalesce(max(t.inbox), 'changes_inbox') INTO inbox FROM strata.typed_inboxes() t
    WHERE t.key_type = (SELECT CASE atttypid WHEN 'character varying'::regtype THEN 'text'::regtype ELSE atttypid END
                        FROM pg_attribute WHERE attrelid = p_table AND attname = cols[1]);
  END IF;
  IF inbox <> 'changes_inbox' THEN
    key_expr := format('r.%I', cols[1]); -- as it is, and typed inboxes have no tenant column
    old_key_expr := format('OLD.%I', cols[1]);
    tenant_expr := NULL;
    old_tenant_expr := NULL;
  ELSIF array_length(cols, 1) > 1 THEN
    key_expr := format('concat_ws(%L, %s)', ':', key_expr);
    old_key_expr := format('concat_ws(%L, %s)', ':', old_key_expr);
  END IF;
  IF p_tenant_column IS NOT NULL THEN
    PERFORM 1 FROM pg_attribute WHERE attrelid = p_table AND attname = p_tenant_column AND attnum > 0 AND NOT attisdropped;
    IF NOT FOUND THEN RAISE EXCEPTION 'strata.watch: % has no column %', p_table, p_tenant_column; END IF;
    tenant_expr := format('r.%I::text', p_tenant_column);
    old_tenant_expr := format('OLD.%I::text', p_tenant_column);
  END IF;
  cells := concat_ws(', ', key_expr, tenant_expr); -- what one row records, after the type name
  old_cells := concat_ws(', ', old_key_expr, old_tenant_expr);

  -- One function per trigger, with static SQL: plans are cached and no branch is evaluated per call.
  PERFORM strata.recorder(fn, inbox, format('SELECT %L, %s FROM new_rows r', p_type_name, cells));
  PERFORM strata.recorder(fn || '_old', inbox, format('SELECT %L, %s FROM old_rows r', p_type_name, cells));

  EXECUTE format('CREATE OR REPLACE TRIGGER strata_changes_ins AFTER INSERT ON %s REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION strata.%I()', p_table, fn);
  EXECUTE format('CREATE OR REPLACE TRIGGER strata_changes_del AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION strata.%I()', p_table, fn || '_old');
  PERFORM strata.truncate_trigger(p_table, p_type_name);
  IF partitioned THEN
    PERFORM strata.recorder(fn || '_upd', inbox, format(
      'SELECT %L, %s FROM new_rows r UNION ALL SELECT %L, %s FROM old_rows r WHERE NOT EXISTS (SELECT 1 FROM new_rows n WHERE %s)',
      p_type_name, cells, p_type_name, cells, same_key));
    EXECUTE format('CREATE OR REPLACE TRIGGER strata_changes_upd AFTER UPDATE ON %s
      REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION strata.%I()',
      p_table, fn || '_upd');
  ELSE
    PERFORM strata.recorder(fn || '_key', inbox, format('VALUES (%L, %s)', p_type_name, old_cells));
    EXECUTE format('CREATE OR REPLACE TRIGGER strata_changes_upd AFTER UPDATE ON %s REFERENCING NEW TABLE AS new_rows
      FOR EACH STATEMENT EXECUTE FUNCTION strata.%I()', p_table, fn);
    PERFORM strata.key_trigger(p_table, cols, NOT strata.rewrites_keys(p_table));
  END IF;

  INSERT INTO strata.watched (table_name, type_name, key_columns, tenant_column)
  VALUES (p_table, p_type_name, cols, p_tenant_column)
  ON CONFLICT (table_name) DO UPDATE SET type_name = excluded.type_name,
    key_columns = excluded.key_columns, tenant_column = excluded.tenant_column;
END
$$;

-- A trigger function that appends the rows of p_rows (a SELECT or VALUES of the type name, the key
-- and, for strata.changes_inbox, the tenant) to p_inbox.
DROP FUNCTION IF EXISTS strata.record_function(text, text); -- version 2's
CREATE OR REPLACE FUNCTION strata.recorder(p_name text, p_inbox text, p_rows text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format($f$
    CREATE OR REPLACE FUNCTION strata.%I() RETURNS trigger LANGUAGE plpgsql AS $body$
    BEGIN
      INSERT INTO strata.%s %s;
      RETURN NULL;
    END
    $body$ $f$, p_name, format('%I (%s)', p_inbox,
      CASE p_inbox WHEN 'changes_inbox' THEN 'type_name, entity_key, tenant' ELSE 'type_name, entity_key' END), p_rows);
END
$$;

-- The row-level trigger recording a changed key's old value; p_only_named: UPDATE OF the key columns.
CREATE OR REPLACE FUNCTION strata.key_trigger(p_table regclass, p_cols text[], p_only_named boolean)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('CREATE OR REPLACE TRIGGER strata_changes_key AFTER UPDATE %s ON %s FOR EACH ROW WHEN (%s)
    EXECUTE FUNCTION strata.%I()',
    CASE WHEN p_only_named THEN 'OF ' || (SELECT string_agg(format('%I', c), ', ') FROM unnest(p_cols) AS c) ELSE '' END,
    p_table,
    (SELECT string_agg(format('OLD.%I IS DISTINCT FROM NEW.%I', c, c), ' OR ') FROM unnest(p_cols) AS c),
    'record_' || p_table::oid || '_key');
END
$$;

-- What a TRUNCATE of a watched table records: the key '*' of the type named by the trigger's argument,
-- in strata.changes_inbox (the typed inboxes could not hold it). Readers invalidate Type:* (every
-- entry in which an entity of the type appears: tags.ts) and Type. One function for every table: a
-- TRUNCATE has no transition tables, so there is nothing per table to compile.
CREATE OR REPLACE FUNCTION strata.record_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO strata.changes_inbox (type_name, entity_key, tenant) VALUES (TG_ARGV[0], '*', NULL);
  RETURN NULL;
END
$$;

-- The statement trigger recording a TRUNCATE of p_table. On a partitioned table it fires for a
-- TRUNCATE of the table (which empties every partition), not for one aimed at a partition.
CREATE OR REPLACE FUNCTION strata.truncate_trigger(p_table regclass, p_type_name text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('CREATE OR REPLACE TRIGGER strata_changes_trunc AFTER TRUNCATE ON %s
    FOR EACH STATEMENT EXECUTE FUNCTION strata.record_truncate(%L)', p_table, p_type_name);
END
$$;

-- Whether p_table has BEFORE UPDATE row triggers besides Strata's: tgtype bits ROW (1), BEFORE (2)
-- and UPDATE (16).
CREATE OR REPLACE FUNCTION strata.rewrites_keys(p_table regclass) RETURNS boolean LANGUAGE sql STABLE AS $$
  SELECT EXISTS (
    SELECT 1 FROM pg_trigger
    WHERE tgrelid = p_table AND NOT tgisinternal AND tgtype & 19 = 19 AND tgname NOT LIKE 'strata\_changes\_%'
  )
$$;

-- When a BEFORE UPDATE row trigger is created on a watched plain table, its key trigger fires on
-- every UPDATE from then on, so that keys that trigger changes still record their old value. Runs as
-- its owner (a superuser: event triggers need one) so that any table owner's DDL works, replaces the
-- trigger under the lock the user's CREATE TRIGGER already holds, and never fails the user's DDL.
CREATE OR REPLACE FUNCTION strata.on_create_trigger() RETURNS event_trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  w record;
BEGIN
  FOR w IN
    SELECT DISTINCT ws.table_name, ws.key_columns
    FROM pg_event_trigger_ddl_commands() c
    JOIN pg_trigger t ON t.oid = c.objid
    JOIN strata.watched ws ON ws.table_name = t.tgrelid
    JOIN pg_class r ON r.oid = t.tgrelid AND r.relkind = 'r'
    WHERE c.classid = 'pg_trigger'::regclass AND t.tgtype & 19 = 19 AND t.tgname NOT LIKE 'strata\_changes\_%'
  LOOP
    PERFORM strata.key_trigger(w.table_name, w.key_columns, false);
  END LOOP;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'strata: could not update the key trigger after CREATE TRIGGER (%); run strata.watch for the table again', SQLERRM;
END
$$;

-- Event triggers need a superuser. Without one, run strata.watch again after adding a BEFORE UPDATE
-- row trigger to a watched table.
DO $$
DECLARE
  schema_name text := (SELECT n.nspname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                       WHERE p.oid = 'strata.on_create_trigger()'::regprocedure);
  name text := left('strata_rewatch_' || schema_name, 46) || '_' || left(md5(schema_name), 16);
BEGIN
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE format('DROP EVENT TRIGGER IF EXISTS %I', name);
    EXECUTE format('CREATE EVENT TRIGGER %I ON ddl_command_end WHEN TAG IN (%L)
      EXECUTE FUNCTION %I.on_create_trigger()', name, 'CREATE TRIGGER', schema_name);
  ELSE
    RAISE NOTICE 'strata: not a superuser, so no event trigger: run strata.watch again after adding a BEFORE UPDATE trigger to a watched table';
  END IF;
END
$$;

-- Drops this schema's triggers on p_table (never another Strata schema's: the names are the same).
CREATE OR REPLACE FUNCTION strata.unwatch(p_table regclass) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  name text;
BEGIN
  FOR name IN
    SELECT t.tgname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
    WHERE t.tgrelid = p_table AND NOT t.tgisinternal
      AND t.tgname IN ('strata_changes_ins', 'strata_changes_upd', 'strata_changes_key', 'strata_changes_del', 'strata_changes_trunc')
      AND p.pronamespace = (SELECT relnamespace FROM pg_class WHERE oid = 'strata.watched'::regclass)
  LOOP
    EXECUTE format('DROP TRIGGER %I ON %s', name, p_table);
  END LOOP;
  FOREACH name IN ARRAY ARRAY['', '_old', '_key', '_upd'] LOOP
    EXECUTE format('DROP FUNCTION IF EXISTS strata.%I()', 'record_' || p_table::oid || name);
  END LOOP;
  DELETE FROM strata.watched WHERE table_name = p_table;
END
$$;

-- Tables dropped since they were watched leave a row and their functions behind: remove them.
DELETE FROM strata.watched w WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = w.table_name);
DO $$
DECLARE
  f regprocedure;
BEGIN
  FOR f IN
    SELECT p.oid::regprocedure FROM pg_proc p
    WHERE p.pronamespace = (SELECT relnamespace FROM pg_class WHERE oid = 'strata.watched'::regclass)
      AND p.proname ~ '^record_[0-9]+(_old|_key|_upd)?$'
      AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = substring(p.proname FROM '^record_([0-9]+)')::oid)
  LOOP
    EXECUTE format('DROP FUNCTION %s', f);
  END LOOP;
END
$$;

-- Upgrading from version 1, where writers appended one row per change to strata.changes itself. One
-- statement, so it applies entirely or not at all:
--   1. regenerate the triggers of every watched table (they write to the inbox from then on);
--   2. replace the log, keeping its owner and grants and its sequence's grants (a new epoch: readers
--      flush and start over);
--   3. let the roles that could write the log write the inbox.
-- Its lock waits give up after 200 ms (before a writer's deadlock check at 1 s), so that a conflict
-- with a writer aborts the upgrade, never the writer; the listener retries its install with backoff.
DO $$
DECLARE
  old_log regclass := 'strata.changes'::regclass;
  owner_ text := (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'strata.changes'::regclass);
  lock_timeout_ text := current_setting('lock_timeout');
  grant_ record;
  role_ text;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = old_log AND attname = 'entity_key') THEN
    RETURN;
  END IF;
  PERFORM set_config('lock_timeout', '200ms', true);
  PERFORM strata.watch(table_name, type_name, array_to_string(key_columns, ','), tenant_column) FROM strata.watched;
  CREATE TEMP TABLE strata_old_grants ON COMMIT DROP AS
    SELECT DISTINCT 'TABLE' AS kind, a.grantee, a.privilege_type FROM pg_class c, aclexplode(c.relacl) a
    WHERE c.oid = old_log AND a.grantee <> c.relowner
    UNION
    SELECT DISTINCT 'SEQUENCE', a.grantee, a.privilege_type FROM pg_class c, aclexplode(c.relacl) a
    WHERE c.oid = 'strata.changes_seq_seq'::regclass AND a.grantee <> c.relowner;
  DROP TABLE strata.changes;
  PERFORM strata.create_log();
  EXECUTE format('ALTER TABLE strata.changes OWNER TO %I', owner_);
  UPDATE strata.changes_state SET epoch = md5(random()::text || clock_timestamp()::text), pruned_through = 0, checkpoint = 0;
  FOR grant_ IN SELECT * FROM strata_old_grants LOOP
    role_ := CASE WHEN grant_.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(grant_.grantee)) END;
    EXECUTE format('GRANT %s ON %s %s TO %s', grant_.privilege_type, grant_.kind,
      CASE grant_.kind WHEN 'TABLE' THEN 'strata.changes' ELSE 'strata.changes_seq_seq' END, role_);
    IF grant_.kind = 'TABLE' AND grant_.privilege_type = 'INSERT' THEN
      EXECUTE format('GRANT INSERT ON strata.changes_inbox TO %s', role_);
    END IF;
  END LOOP;
  DROP TABLE strata_old_grants;
  INSERT INTO strata.meta (key, value) VALUES ('changes_version', '2')
  ON CONFLICT (key) DO UPDATE SET value = excluded.value;
  PERFORM set_config('lock_timeout', lock_timeout_, true);
END
$$;

-- Upgrading from version 2 (and finishing a fresh install), in one statement:
--   1. let NULL keys into strata.changes_inbox (version 2 refused them, failing the writer);
--   2. give the typed inboxes the owner of strata.changes_inbox (or, failing that, all rights to it),
--      and the roles that may write strata.changes_inbox the same rights on them;
--   3. regenerate the triggers of every watched table, so that those keyed by one integer, bigint,
--      text, varchar or uuid column record into the typed inbox. A table whose triggers this role
--      may not replace keeps its version 2 triggers, which record into strata.changes_inbox: still
--      correct (a warning says to run strata.watch as its owner).
-- Rows already in strata.changes_inbox are drained as before, and the log is kept: no flush.
-- Lock waits give up after 200 ms, as above.
DO $$
DECLARE
  lock_timeout_ text := current_setting('lock_timeout');
  owner_ text := (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'strata.changes_inbox'::regclass);
  grant_ record;
  inbox text;
  w record;
BEGIN
  IF (SELECT value FROM strata.meta WHERE key = 'changes_version') = '3' THEN
    RETURN;
  END IF;
  PERFORM set_config('lock_timeout', '200ms', true);
  IF (SELECT attnotnull FROM pg_attribute WHERE attrelid = 'strata.changes_inbox'::regclass AND attname = 'entity_key') THEN
    ALTER TABLE strata.changes_inbox ALTER COLUMN entity_key DROP NOT NULL;
  END IF;
  FOR inbox IN SELECT t.inbox FROM strata.typed_inboxes() t LOOP
    IF owner_ <> current_user THEN
      BEGIN
        EXECUTE format('ALTER TABLE strata.%I OWNER TO %I', inbox, owner_);
      EXCEPTION WHEN insufficient_privilege THEN
        EXECUTE format('GRANT ALL ON strata.%I TO %I', inbox, owner_);
      END;
    END IF;
    FOR grant_ IN
      SELECT a.grantee, a.privilege_type FROM pg_class c, aclexplode(c.relacl) a
      WHERE c.oid = 'strata.changes_inbox'::regclass AND a.grantee <> c.relowner
    LOOP
      EXECUTE format('GRANT %s ON strata.%I TO %s', grant_.privilege_type, inbox,
        CASE WHEN grant_.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(grant_.grantee)) END);
    END LOOP;
  END LOOP;
  FOR w IN SELECT * FROM strata.watched LOOP
    BEGIN
      PERFORM strata.watch(w.table_name, w.type_name, array_to_string(w.key_columns, ','), w.tenant_column);
    EXCEPTION WHEN insufficient_privilege THEN
      RAISE WARNING 'strata: could not regenerate the triggers of % (%): they keep recording into strata.changes_inbox; run strata.watch for it as its owner',
        w.table_name, SQLERRM;
    WHEN duplicate_object THEN
      RAISE WARNING 'strata: % is not watched by this schema any more (%)', w.table_name, SQLERRM;
    END;
  END LOOP;
  INSERT INTO strata.meta (key, value) VALUES ('changes_version', '3')
  ON CONFLICT (key) DO UPDATE SET value = excluded.value;
  PERFORM set_config('lock_timeout', lock_timeout_, true);
END
$$;

-- Tables watched before TRUNCATE was recorded get its trigger (strata.watch creates it since then),
-- whatever changes_version says: the check is the trigger itself, so this is done once per table. A
-- table on which this role may not create triggers keeps the others, and a warning says to run
-- strata.watch for it as its owner. Lock waits give up after 200 ms, as above.
DO $$
DECLARE
  lock_timeout_ text := current_setting('lock_timeout');
  w record;
BEGIN
  PERFORM set_config('lock_timeout', '200ms', true);
  FOR w IN
    SELECT ws.table_name, ws.type_name FROM strata.watched ws
    WHERE NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = ws.table_name AND t.tgname = 'strata_changes_trunc')
  LOOP
    BEGIN
      PERFORM strata.truncate_trigger(w.table_name, w.type_name);
    EXCEPTION WHEN insufficient_privilege THEN
      RAISE WARNING 'strata: could not add the TRUNCATE trigger to % (%): a TRUNCATE of it invalidates nothing; run strata.watch for it as its owner',
        w.table_name, SQLERRM;
    END;
  END LOOP;
  PERFORM set_config('lock_timeout', lock_timeout_, true);
END
$$;
