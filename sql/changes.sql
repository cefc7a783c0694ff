-- graphql-strata: database change capture (schema "strata"). Idempotent; run after install.sql.
-- Version 1.

SELECT pg_advisory_xact_lock(hashtext('graphql-strata install'));

CREATE SCHEMA IF NOT EXISTS strata;

-- The change log. UNLOGGED: writers pay no WAL for it; a crash empties it, which listeners detect
-- (the epoch row below disappears with it) and answer by flushing the cache.
-- No primary key: a B-tree on an ever-growing sequence is a hot spot for concurrent writers. Readers
-- find recent rows through the BRIN index instead.
CREATE UNLOGGED TABLE IF NOT EXISTS strata.changes (
  seq bigserial NOT NULL,
  type_name text NOT NULL,
  entity_key text NOT NULL,   -- key column values as text, joined with ':' (composite keys)
  tenant text,
  at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS changes_seq ON strata.changes USING brin (seq) WITH (pages_per_range = 32, autosummarize = on);

-- One row: the log's identity (a new epoch after a crash) and how far pruning has gone.
CREATE UNLOGGED TABLE IF NOT EXISTS strata.changes_state (
  one boolean PRIMARY KEY DEFAULT true CHECK (one),
  epoch text NOT NULL,
  pruned_through bigint NOT NULL DEFAULT 0,
  checkpoint bigint NOT NULL DEFAULT 0   -- everything up to here was applied to the shared tiers
);
INSERT INTO strata.changes_state (epoch) VALUES (md5(random()::text || clock_timestamp()::text))
ON CONFLICT (one) DO NOTHING;

CREATE TABLE IF NOT EXISTS strata.watched (
  table_name regclass PRIMARY KEY,
  type_name text NOT NULL,
  key_columns text[] NOT NULL,
  tenant_column text
);

-- Watches a table: every committed INSERT, UPDATE and DELETE records the changed rows' keys (old and
-- new) in strata.changes, from statement-level triggers reading transition tables.
-- Example: SELECT strata.watch('public.post', 'Post', 'id');
--          SELECT strata.watch('public.line', 'Line', 'order_id,position', 'tenant_id');
CREATE OR REPLACE FUNCTION strata.watch(
  p_table regclass, p_type_name text, p_key_columns text, p_tenant_column text DEFAULT NULL
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  cols text[] := string_to_array(replace(p_key_columns, ' ', ''), ',');
  key_expr text;
  same_key text;
  tenant_expr text := 'NULL::text';
  fn text := format('strata.%I', 'record_' || p_table::oid);
  col text;
BEGIN
  IF p_type_name !~ '^[_A-Za-z][_0-9A-Za-z]*$' THEN
    RAISE EXCEPTION 'strata.watch: % is not a GraphQL type name', p_type_name;
  END IF;
  FOREACH col IN ARRAY cols LOOP
    PERFORM 1 FROM pg_attribute WHERE attrelid = p_table AND attname = col AND attnum > 0 AND NOT attisdropped;
    IF NOT FOUND THEN RAISE EXCEPTION 'strata.watch: % has no column %', p_table, col; END IF;
  END LOOP;
  SELECT string_agg(format('r.%I::text', c), ', ') INTO key_expr FROM unnest(cols) AS c;
  SELECT string_agg(format('n.%I IS NOT DISTINCT FROM r.%I', c, c), ' AND ') INTO same_key FROM unnest(cols) AS c;
  key_expr := CASE WHEN array_length(cols, 1) = 1 THEN key_expr ELSE format('concat_ws(%L, %s)', ':', key_expr) END;
  IF p_tenant_column IS NOT NULL THEN
    PERFORM 1 FROM pg_attribute WHERE attrelid = p_table AND attname = p_tenant_column AND attnum > 0 AND NOT attisdropped;
    IF NOT FOUND THEN RAISE EXCEPTION 'strata.watch: % has no column %', p_table, p_tenant_column; END IF;
    tenant_expr := format('r.%I::text', p_tenant_column);
  END IF;

  -- A function per table with static SQL, so its plan is cached (no EXECUTE per statement).
  EXECUTE format($f$
    CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $body$
    BEGIN
      IF TG_OP = 'INSERT' THEN
        INSERT INTO strata.changes (type_name, entity_key, tenant)
        SELECT %L, %s, %s FROM new_rows r;
      ELSIF TG_OP = 'UPDATE' THEN
        -- New keys, and old keys only where the key itself changed.
        INSERT INTO strata.changes (type_name, entity_key, tenant)
        SELECT %L, %s, %s FROM new_rows r
        UNION ALL
        SELECT %L, %s, %s FROM old_rows r WHERE NOT EXISTS (SELECT 1 FROM new_rows n WHERE %s);
      ELSE
        INSERT INTO strata.changes (type_name, entity_key, tenant)
        SELECT %L, %s, %s FROM old_rows r;
      END IF;
      RETURN NULL;
    END
    $body$ $f$,
    fn, p_type_name, key_expr, tenant_expr,
    p_type_name, key_expr, tenant_expr, p_type_name, key_expr, tenant_expr, same_key,
    p_type_name, key_expr, tenant_expr);

  EXECUTE format('DROP TRIGGER IF EXISTS strata_changes_ins ON %s', p_table);
  EXECUTE format('DROP TRIGGER IF EXISTS strata_changes_upd ON %s', p_table);
  EXECUTE format('DROP TRIGGER IF EXISTS strata_changes_del ON %s', p_table);
  EXECUTE format('CREATE TRIGGER strata_changes_ins AFTER INSERT ON %s REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION %s()', p_table, fn);
  EXECUTE format('CREATE TRIGGER strata_changes_upd AFTER UPDATE ON %s REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION %s()', p_table, fn);
  EXECUTE format('CREATE TRIGGER strata_changes_del AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION %s()', p_table, fn);

  INSERT INTO strata.watched (table_name, type_name, key_columns, tenant_column)
  VALUES (p_table, p_type_name, cols, p_tenant_column)
  ON CONFLICT (table_name) DO UPDATE SET type_name = excluded.type_name,
    key_columns = excluded.key_columns, tenant_column = excluded.tenant_column;
END
$$;

CREATE OR REPLACE FUNCTION strata.unwatch(p_table regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('DROP TRIGGER IF EXISTS strata_changes_ins ON %s', p_table);
  EXECUTE format('DROP TRIGGER IF EXISTS strata_changes_upd ON %s', p_table);
  EXECUTE format('DROP TRIGGER IF EXISTS strata_changes_del ON %s', p_table);
  EXECUTE format('DROP FUNCTION IF EXISTS strata.%I()', 'record_' || p_table::oid);
  DELETE FROM strata.watched WHERE table_name = p_table;
END
$$;

INSERT INTO strata.meta (key, value) VALUES ('changes_version', '1')
ON CONFLICT (key) DO UPDATE SET value = excluded.value;
