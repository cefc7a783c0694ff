import { memoryTier } from '../../src/index.js'
import { describeTierConformance } from './tier-suite.js'

describeTierConformance('memory', async () => ({
  tier: memoryTier({ maxBytes: 64 * 2 ** 20 }),
  guardsWrites: false,
}))
