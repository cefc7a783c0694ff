#!/usr/bin/env bash
# Proves the published tarball works: pack, install into a fresh project with its peers,
# import it as ESM, check the type declarations resolve, and run one cached request.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cd "$root"
npm run build --silent
tarball=$(npm pack --silent --pack-destination "$work" | tail -n1)
cd "$work"
npm init -y >/dev/null
npm pkg set type=module >/dev/null
npm install --no-audit --no-fund --silent "./$tarball" graphql@16 graphql-yoga@5 typescript@5 @types/node@20 >/dev/null

cat > smoke.mjs <<'JS'
import { createSchema, createYoga } from 'graphql-yoga'
import { memoryTier, strataDirectivesSdl, useStrata } from 'graphql-strata'

const schema = createSchema({
  typeDefs: `${strataDirectivesSdl} type Query { hello: String @cacheControl(maxAge: 60) }`,
  resolvers: { Query: { hello: () => 'world' } },
})
const yoga = createYoga({ schema, plugins: [useStrata({ tenant: false, tiers: [memoryTier()] })] })
const ask = () => yoga.fetch('http://localhost/graphql', {
  method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: '{ hello }' }),
})
const statuses = [(await ask()).headers.get('x-strata-cache'), (await ask()).headers.get('x-strata-cache')]
if (statuses.join() !== 'MISS,HIT') throw new Error(`expected MISS,HIT, got ${statuses}`)
console.log('pack-check: import and cache OK', statuses.join(' -> '))
JS
node smoke.mjs

cat > subpaths.mjs <<'JS'
import { existsSync } from 'node:fs'
import { postgresInstallSql, postgresTier } from 'graphql-strata/postgres'
import { redisTier } from 'graphql-strata/redis'

if (typeof postgresTier !== 'function' || typeof redisTier !== 'function') throw new Error('subpath exports missing')
if (!postgresInstallSql().includes('CREATE UNLOGGED TABLE IF NOT EXISTS strata.entries')) throw new Error('sql/install.sql not shipped')
if (!existsSync('node_modules/graphql-strata/sql/install.sql')) throw new Error('sql/ not in the tarball')
console.log('pack-check: graphql-strata/redis and graphql-strata/postgres import without ioredis or pg installed')
JS
node subpaths.mjs

cat > types.ts <<'TS'
import { type StrataOptions, type CacheTier, useStrata, memoryTier } from 'graphql-strata'
import { type PostgresTierOptions } from 'graphql-strata/postgres'
import { type RedisTierOptions } from 'graphql-strata/redis'
const pgOptions: Partial<PostgresTierOptions> = { schema: 'cache' }
const redisOptions: Partial<RedisTierOptions> = { shards: 8 }
void pgOptions
void redisOptions
const options: StrataOptions = { tenant: ({ context }) => context.request.headers.get('x-tenant-id'), tiers: [memoryTier()] }
const tier: CacheTier = memoryTier()
void useStrata(options).strata.stats().hits
void tier
TS
npx tsc --noEmit --strict --module nodenext --moduleResolution nodenext --skipLibCheck false types.ts
echo "pack-check: type declarations OK"
