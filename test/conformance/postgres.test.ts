import pg from 'pg'
import { postgresTier } from '../../src/postgres.js'
import { serviceUrl } from '../support/services.js'
import { describeTierConformance, postgresRawWriter } from './tier-suite.js'

describeTierConformance('postgres', async () => {
  const pool = new pg.Pool({ connectionString: await serviceUrl('postgres'), max: 8 })
  const schema = `strata_conf_${process.pid}`
  const tier = postgresTier({ pool, schema, skewToleranceMs: 100 })
  return {
    tier,
    guardsWrites: true,
    skewMs: 100,
    writeRaw: postgresRawWriter(
      (text, params) => pool.query(text, params),
      schema,
      () => tier.get('warm-up'),
    ),
    cleanup: async () => {
      await tier.close?.()
      await pool.query(`DROP SCHEMA ${schema} CASCADE`)
      await pool.end()
    },
  }
})
