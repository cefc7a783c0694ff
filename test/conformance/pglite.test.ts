import { PGlite } from '@electric-sql/pglite'
import { postgresTier } from '../../src/postgres.js'
import { describeTierConformance } from './tier-suite.js'

describeTierConformance('postgres on embedded PGlite', async () => {
  const db = new PGlite()
  const tier = postgresTier({ pool: db, skewToleranceMs: 100 })
  return {
    tier,
    guardsWrites: true,
    skewMs: 100,
    writeRaw: async (key, value) => {
      await tier.get('warm-up') // installs the schema
      await db.query(
        `INSERT INTO strata.entries (key, tenant, tags, size, created_at, expires_at, value)
         VALUES ($1, 'acme', '{}', 0, 0, $2, $3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at`,
        [key, Date.now() + 60_000, value],
      )
    },
    cleanup: async () => {
      await tier.close?.()
      await db.close()
    },
  }
})
