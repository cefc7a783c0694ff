import pg from 'pg'
import { postgresTier } from '../../src/postgres.js'
import { serviceUrl } from '../support/services.js'
import { describeTierConformance } from './tier-suite.js'

describeTierConformance('postgres', async () => {
  const pool = new pg.Pool({ connectionString: await serviceUrl('postgres'), max: 8 })
  const schema = `strata_conf_${process.pid}`
  const tier = postgresTier({ pool, schema, skewToleranceMs: 100 })
  return {
    tier,
    guardsWrites: true,
    skewMs: 100,
    writeRaw: async (key, value) => {
      await tier.get('warm-up') // installs the schema
      await pool.query(
        `INSERT INTO ${schema}.entries (key, tenant, tags, size, created_at, expires_at, value)
         VALUES ($1, 'acme', '{}', 0, 0, $2, $3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at`,
        [key, Date.now() + 60_000, value],
      )
    },
    cleanup: async () => {
      await tier.close?.()
      await pool.query(`DROP SCHEMA ${schema} CASCADE`)
      await pool.end()
    },
  }
})
