export {
  type PostgresChangesOptions,
  postgresChanges,
  postgresChangesDefaults,
  postgresChangesSql,
} from './changes/postgres-changes.js'
export {
  type PostgresTierOptions,
  postgresInstallSql,
  postgresTier,
  postgresTierDefaults,
  type Queryable,
} from './tiers/postgres.js'
export { PostgresBus } from './tiers/postgres-bus.js'
