import { readFileSync } from 'node:fs'

/**
 * One of the package's SQL scripts (`sql/` beside `dist/` and `src/`), with its objects in
 * `schema` instead of `strata`.
 */
export function sqlScript(file: 'install.sql' | 'changes.sql', schema: string): string {
  return inSchema(readFileSync(new URL(`../../sql/${file}`, import.meta.url), 'utf8'), schema)
}

/** A script written for the schema `strata`, with its objects in `schema` instead. */
export function inSchema(sql: string, schema: string): string {
  if (schema === 'strata') return sql
  return sql.replace(/\bstrata\.|SCHEMA IF NOT EXISTS strata;/g, (match) => match.replace('strata', schema))
}
