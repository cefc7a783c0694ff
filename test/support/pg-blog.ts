import { createSchema } from 'graphql-yoga'
import type pg from 'pg'
import { strataDirectivesSdl } from '../../src/index.js'

/** Tables in their own schema (`name`), read by a Yoga schema, for change-capture tests. */
export async function createPgBlog(pool: pg.Pool, name: string) {
  await pool.query(`
    DROP SCHEMA IF EXISTS ${name} CASCADE;
    CREATE SCHEMA ${name};
    CREATE TABLE ${name}.post (id int PRIMARY KEY, title text NOT NULL, tenant_id text NOT NULL DEFAULT 'acme');
    CREATE TABLE ${name}.line (order_id int, pos int, qty int NOT NULL, PRIMARY KEY (order_id, pos));
    INSERT INTO ${name}.post (id, title) SELECT g, 'v0' FROM generate_series(1, 5) g;
    INSERT INTO ${name}.line VALUES (1, 1, 10), (1, 2, 20);
  `)
  const rows = async (text: string, params: unknown[] = []) => (await pool.query(text, params)).rows
  const schema = createSchema({
    typeDefs: /* GraphQL */ `
      ${strataDirectivesSdl}
      type Post @cacheControl(maxAge: 60) { id: ID! title: String! }
      type Line @cacheControl(maxAge: 60) { orderId: ID! pos: Int! qty: Int! }
      type Query {
        posts: [Post!]!
        post(id: ID!): Post
        line(orderId: ID!, pos: Int!): Line
      }
      type Mutation { setTitle(id: ID!, title: String!): Post }
    `,
    resolvers: {
      Query: {
        posts: () => rows(`SELECT id, title FROM ${name}.post ORDER BY id`),
        post: async (_: unknown, { id }: { id: string }) =>
          (await rows(`SELECT id, title FROM ${name}.post WHERE id = $1`, [id]))[0] ?? null,
        line: async (_: unknown, { orderId, pos }: { orderId: string; pos: number }) =>
          (
            await rows(
              `SELECT order_id AS "orderId", pos, qty FROM ${name}.line WHERE order_id = $1 AND pos = $2`,
              [orderId, pos],
            )
          )[0] ?? null,
      },
      Mutation: {
        setTitle: async (_: unknown, { id, title }: { id: string; title: string }) =>
          (
            await rows(`UPDATE ${name}.post SET title = $2 WHERE id = $1 RETURNING id, title`, [id, title])
          )[0] ?? null,
      },
    },
  })
  return { schema, drop: () => pool.query(`DROP SCHEMA IF EXISTS ${name} CASCADE`) }
}
