/**
 * ONSALE_DATABASE_URL may list several `postgres://` URLs separated by commas: the shards, in a fixed
 * order (an event's id names its shard by position, so shards are only ever added at the end).
 * ONSALE_DATABASE_REPLICA_URL lists one streaming replica per shard in the same order, an empty entry for a
 * shard without one. These parse and check both lists; they import no driver (config loading uses them).
 */

const POSTGRES = /^postgres(ql)?:\/\//i;

/** The URLs of a database setting: one, or the shards of a comma-separated list. */
export function splitUrls(setting: string): string[] {
  return setting.split(',').map((u) => u.trim());
}

export function isSharded(databaseUrl: string): boolean {
  // Only a list of databases: a Redis Cluster queue URL lists its nodes with commas too.
  return databaseUrl.includes(',') && !/^rediss?:/i.test(databaseUrl.trim());
}

/**
 * Throws an Error saying what is wrong with a list of shards: every entry must be a postgres:// URL that
 * parses, with a host and a database, and no two alike.
 */
export function checkShardUrls(setting: string): void {
  const urls = splitUrls(setting);
  if (urls.length > 1024) throw new Error('more than 1024 shards');
  urls.forEach((url, i) => checkPostgresUrl(url, `shard ${i + 1}`, 'several database URLs (shards)'));
  if (new Set(urls).size !== urls.length) throw new Error('the same shard is listed twice');
}

/** Throws an Error saying what is wrong with the replica list for `shards` shards. */
export function checkReplicaUrls(setting: string, databaseUrl: string): void {
  const replicas = splitUrls(setting);
  const shards = splitUrls(databaseUrl);
  if (!POSTGRES.test(shards[0]!)) throw new Error('replicas need a postgres:// database');
  if (replicas.length > shards.length) {
    throw new Error(`${replicas.length} replicas listed for ${shards.length} database shard(s)`);
  }
  replicas.forEach((url, i) => {
    if (url !== '') checkPostgresUrl(url, `replica ${i + 1}`, 'replicas');
  });
}

function checkPostgresUrl(url: string, which: string, what: string): void {
  if (!POSTGRES.test(url))
    throw new Error(`${which} is not a postgres:// URL (${what} must all be PostgreSQL)`);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`${which} is not a URL`);
  }
  if (parsed.hostname === '' || parsed.pathname.length <= 1) {
    throw new Error(`${which} needs a host and a database (postgres://user@host:port/database)`);
  }
}

/** Shards and their replicas side by side, for the sharded storage. */
export function shardSpecs(
  databaseUrl: string,
  replicaUrl: string | null,
): Array<{ url: string; replicaUrl?: string }> {
  const replicas = replicaUrl ? splitUrls(replicaUrl) : [];
  return splitUrls(databaseUrl).map((url, i) => (replicas[i] ? { url, replicaUrl: replicas[i] } : { url }));
}
