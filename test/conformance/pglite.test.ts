import { PGlite } from '@electric-sql/pglite'
import { postgresTier } from '../../src/postgres.js'
import { describeTierConformance, postgresRawWriter } from './tier-suite.js'

describeTierConformance('postgres on embedded PGlite', async () => {
  const db = new PGlite()
  const tier = postgresTier({ pool: db, skewToleranceMs: 100 })
  return {
    tier,
    guardsWrites: true,
    skewMs: 100,
    writeRaw: postgresRawWriter(
      (text, params) => db.query(text, params),
      'strata',
      () => tier.get('warm-up'),
    ),
    cleanup: async () => {
      await tier.close?.()
      await db.close()
    },
  }
})
