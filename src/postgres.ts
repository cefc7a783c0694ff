export { postgresChanges } from './changes/postgres-changes.js'
export {
  type PostgresChangesOptions,
  postgresChangesDefaults,
  postgresChangesSql,
} from './changes/postgres-changes-options.js'
export {
  type PostgresTierOptions,
  postgresInstallSql,
  postgresTier,
  postgresTierDefaults,
  type Queryable,
} from './tiers/postgres.js'
export { PostgresBus } from './tiers/postgres-bus.js'
