export { type RedisClientLike, type RedisTierOptions, redisTier, redisTierDefaults } from './tiers/redis.js'
export { RedisBus } from './tiers/redis-bus.js'
