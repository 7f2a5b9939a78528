/**
 * The Redis queue's URL, read without loading a driver (config checks it at start).
 *
 *   redis[s]://[user:password@]host[:port][/db][?prefix=name]           one server
 *   redis[s]://[user:password@]host[:port][?prefix=name&cluster=1]      Redis Cluster, one seed node
 *   redis[s]://[user:password@]h1:p1,h2:p2,h3:p3[?prefix=name]          Redis Cluster, several seed nodes
 *
 * Several nodes mean a cluster (cluster=1 may be given, cluster=0 may not). The credentials and TLS
 * (rediss:) apply to every node; the client learns the other nodes from the cluster itself. A cluster has
 * one database, so a cluster URL takes no /db. The prefix must not contain `{` or `}`: key names carry a
 * hash tag per event, and a brace in the prefix would change which part of the name Redis hashes.
 */
export interface RedisNode {
  host: string;
  port: number;
}

export type RedisTarget =
  | { cluster: false; url: string; prefix: string }
  | {
      cluster: true;
      nodes: RedisNode[];
      tls: boolean;
      username: string | undefined;
      password: string | undefined;
      prefix: string;
    };

const DEFAULT_PREFIX = 'onsale';
const DEFAULT_PORT = 6379;
const OUR_PARAMETERS = new Set(['prefix', 'cluster']);

/** Throws an Error saying what is wrong (never echoing the password). */
export function parseRedisUrl(url: string): RedisTarget {
  const match = /^(rediss?):\/\/(?:([^@/?#]*)@)?([^/?#]*)(\/[^?#]*)?(?:\?([^#]*))?$/i.exec(url.trim());
  if (!match) throw new Error('not of the form redis[s]://[user:password@]host[:port][,host:port…][/db][?…]');
  const [, scheme, credentials, hostList, path, query] = match;
  const params = new URLSearchParams(query ?? '');
  const prefix = params.get('prefix') || DEFAULT_PREFIX;
  if (/[{}]/.test(prefix)) throw new Error('the prefix must not contain { or }');
  const clusterParam = params.get('cluster');
  if (clusterParam !== null && clusterParam !== '0' && clusterParam !== '1') {
    throw new Error(`cluster must be 0 or 1, not "${clusterParam}"`);
  }
  const nodes = hostList!.split(',').map(parseNode);
  const cluster = clusterParam === '1' || nodes.length > 1;
  if (clusterParam === '0' && nodes.length > 1)
    throw new Error('several nodes mean a cluster: cluster=0 contradicts them');
  if (!cluster) {
    // One server: ioredis reads the URL itself (credentials, db, TLS); only our parameters are taken off.
    // Other parameters are ioredis's own (as before cluster support), passed on.
    const single = new URL(
      `${scheme!.toLowerCase()}://${credentials ? `${credentials}@` : ''}${hostList}${path ?? ''}`,
    );
    for (const [name, value] of params)
      if (!OUR_PARAMETERS.has(name)) single.searchParams.append(name, value);
    if (path && path !== '/' && !/^\/\d+$/.test(path))
      throw new Error('the database must be a number (/0, /1…)');
    return { cluster: false, url: single.toString(), prefix };
  }
  for (const name of params.keys()) {
    if (!OUR_PARAMETERS.has(name))
      throw new Error(`unknown parameter "${name}" for a cluster (accepted: prefix, cluster)`);
  }
  if (path && path !== '/' && path !== '/0')
    throw new Error('a Redis Cluster has one database: no /db in a cluster URL');
  const [user, password] = splitCredentials(credentials);
  return { cluster: true, nodes, tls: scheme!.toLowerCase() === 'rediss', username: user, password, prefix };
}

function parseNode(text: string): RedisNode {
  const match = /^(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::(\d{1,5}))?$/i.exec(text);
  if (!match) throw new Error(`"${text}" is not a host[:port]`);
  const port = match[2] === undefined ? DEFAULT_PORT : Number(match[2]);
  if (port < 1 || port > 65535) throw new Error(`port ${port} is out of range`);
  return { host: match[1]!.replace(/^\[|\]$/g, ''), port };
}

function splitCredentials(credentials: string | undefined): [string | undefined, string | undefined] {
  if (!credentials) return [undefined, undefined];
  const colon = credentials.indexOf(':');
  const decode = (s: string) => (s === '' ? undefined : decodeURIComponent(s));
  if (colon < 0) return [decode(credentials), undefined];
  return [decode(credentials.slice(0, colon)), decode(credentials.slice(colon + 1))];
}
