import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { balancerArgs, findBalancer } from '../src/processes/lb/balancer.js';
import { machineBusySeconds as machineBusyOrNull } from '../src/shared/machine-cpu.js';
import type { SimulationReport } from '../src/simulate/run.js';
import {
  childrenOf,
  cleanEnv,
  cpuSeconds,
  finishedChildrenCpuSeconds,
  freePort,
  spawnNode,
  spawnProcess,
  tempDir,
  waitForHttp,
  type BenchProcess,
} from './processes.js';
import { runWrk } from './wrk.js';

/**
 * The bench's `simulator` part: how fast `onsale simulate` itself can send, with one process and with two,
 * against wrk as the baseline, all three against a server that costs next to nothing per request: nginx (one
 * worker) answering every purchase with a final 409 sold_out from its configuration, so that the simulator
 * sends, retries and settles but has nothing to follow. The server's and the machine's CPU are measured too,
 * so the figures say when the limit was not the load generator.
 */

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const EVENT_ID = 'bench';
const TYPE_ID = 'bench-ga';
/** The bench measures on Linux (it reads /proc for every figure): 0 elsewhere. */
const machineBusySeconds = () => machineBusyOrNull() ?? 0;

export interface LoadGeneratorFigures {
  name: string;
  requests: number;
  requestsPerSec: number;
  /** The load generator's CPU milliseconds per request (the simulator: its sending phase, see clientCpu). */
  cpuMsPerRequest: number;
  /** CPU seconds per second of the load generator and of nginx while it ran. */
  clientBusyCores: number;
  serverBusyCores: number;
  /** CPU seconds per second of the whole machine meanwhile, whoever used them (/proc/stat). */
  machineBusyCores: number;
  /** What limited the rate, judged from those. */
  limit: string;
}

interface SimulatorFigures {
  cpus: number;
  connections: number;
  runs: LoadGeneratorFigures[];
}

const EVENT = JSON.stringify({
  id: EVENT_ID,
  name: 'Simulator bench (nginx stub)',
  salesOpenAt: '2020-01-01T00:00:00.000Z',
  ticketTypes: [{ id: TYPE_ID, name: 'GA', priceCents: 100, capacity: 1, maxPerBuyer: 4 }],
});
const STATS = JSON.stringify({
  eventId: EVENT_ID,
  ticketTypes: [{ id: TYPE_ID, capacity: 1, sold: 1, held: 0, available: 0 }],
  purchases: { queued: 0 },
});
const SOLD_OUT = JSON.stringify({ error: { code: 'sold_out', message: 'sold out' } });

/** nginx, one worker, answering the few routes the simulator uses from its configuration. */
function nginxConfig(dir: string, port: number): string {
  const json = (s: string) => `'${s}'`;
  return `worker_processes 1;
pid ${dir}/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
    client_body_temp_path ${dir}/client_body;
    proxy_temp_path ${dir}/proxy;
    fastcgi_temp_path ${dir}/fastcgi;
    uwsgi_temp_path ${dir}/uwsgi;
    scgi_temp_path ${dir}/scgi;
    access_log off;
    keepalive_requests 10000000;
    default_type application/json;
    server {
        listen 127.0.0.1:${port};
        location = /healthz { return 200 '{"status":"ok"}'; }
        location = /api/events { return 201 ${json(EVENT)}; }
        location = /api/events/${EVENT_ID} { return 200 ${json(EVENT)}; }
        location = /api/events/${EVENT_ID}/stats { return 200 ${json(STATS)}; }
        location = /api/events/${EVENT_ID}/purchases { return 409 ${json(SOLD_OUT)}; }
    }
}
`;
}

function judge(
  f: Omit<LoadGeneratorFigures, 'limit' | 'name' | 'requests' | 'requestsPerSec' | 'cpuMsPerRequest'>,
  clientProcesses: number,
  cpus: number,
): string {
  if (f.serverBusyCores >= 0.85) return 'the server (nginx, one worker, a full core)';
  if (f.machineBusyCores >= 0.85 * cpus) {
    return f.clientBusyCores + f.serverBusyCores >= 0.7 * f.machineBusyCores
      ? `the machine (${cpus} CPUs, shared by the load generator and the server)`
      : `the machine (${cpus} CPUs, busy with other work too)`;
  }
  if (f.clientBusyCores >= 0.85 * Math.min(clientProcesses, cpus)) return 'the load generator';
  return 'none of the CPUs (latency or connections)';
}

/**
 * Plays `buyers` purchases (no repeats, all at the opening) with `onsale simulate --processes 1` and `2`,
 * then runs wrk (`threads` 1 and 2) for `wrkSeconds`, all with `connections` connections against the nginx
 * stub.
 */
export async function measureSimulator(
  plan: { buyers: number; connections: number; wrkSeconds: number },
  progress: (line: string) => void,
): Promise<SimulatorFigures> {
  const nginx = findBalancer('nginx');
  const dir = tempDir();
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  mkdirSync(join(dir.path, 'logs'), { recursive: true });
  const config = join(dir.path, 'nginx.conf');
  writeFileSync(config, nginxConfig(dir.path, port));
  const server = spawnProcess(nginx, balancerArgs('nginx', config, dir.path), cleanEnv({}));
  const cpus = availableParallelism();
  const runs: LoadGeneratorFigures[] = [];
  try {
    await waitForHttp(`${url}/healthz`, server);
    // nginx runs as master and one worker: the worker's CPU is the server's.
    const worker = await nginxWorker(server);
    for (const processes of [1, 2]) {
      const f = await simulatorRun(url, processes, plan, worker, cpus);
      progress(`simulator: ${describe(f)}`);
      runs.push(f);
    }
    for (const threads of [1, 2]) {
      const serverBefore = cpuSeconds(worker);
      const clientBefore = finishedChildrenCpuSeconds();
      const machineBefore = machineBusySeconds();
      const w = await runWrk(
        url,
        { eventId: EVENT_ID, ticketTypeId: TYPE_ID, buyerPrefix: 'wrk' },
        { threads, connections: plan.connections, durationSec: plan.wrkSeconds },
      );
      const clientCpu = finishedChildrenCpuSeconds() - clientBefore;
      const serverBusy = (cpuSeconds(worker) - serverBefore) / w.durationSec;
      const busy = {
        clientBusyCores: clientCpu / w.durationSec,
        serverBusyCores: serverBusy,
        machineBusyCores: (machineBusySeconds() - machineBefore) / w.durationSec,
      };
      const f: LoadGeneratorFigures = {
        name: `wrk, ${threads} thread(s)`,
        requests: w.requests,
        requestsPerSec: w.requests / w.durationSec,
        cpuMsPerRequest: (clientCpu * 1000) / Math.max(w.requests, 1),
        ...busy,
        limit: judge(busy, threads, cpus),
      };
      progress(`simulator: ${describe(f)}`);
      runs.push(f);
    }
  } finally {
    await server.stop();
    dir.remove();
  }
  return { cpus, connections: plan.connections, runs };
}

function describe(f: LoadGeneratorFigures): string {
  return (
    `${f.name}: ${Math.round(f.requestsPerSec).toLocaleString('en-US')} req/s, ` +
    `${f.cpuMsPerRequest.toFixed(4)} CPU ms per request; busy cores: it ${f.clientBusyCores.toFixed(2)}, ` +
    `nginx ${f.serverBusyCores.toFixed(2)}, the machine ${f.machineBusyCores.toFixed(2)}; limit: ${f.limit}`
  );
}

async function simulatorRun(
  url: string,
  processes: number,
  plan: { buyers: number; connections: number },
  worker: number,
  cpus: number,
): Promise<LoadGeneratorFigures> {
  const out = tempDir();
  const json = join(out.path, 'report.json');
  const serverBefore = cpuSeconds(worker);
  const machineBefore = machineBusySeconds();
  const started = Date.now();
  const run: BenchProcess = spawnNode(
    CLI,
    [
      'simulate',
      '--url',
      url,
      '--event',
      EVENT_ID,
      '--buyers',
      String(plan.buyers),
      '--repeat',
      '0',
      '--connections',
      String(plan.connections),
      '--processes',
      String(processes),
      '--report-json',
      json,
    ],
    cleanEnv({ ONSALE_ADMIN_TOKEN: 'bench-simulator-0123456789abcdef' }),
  );
  while (!run.exited()) await new Promise((r) => setTimeout(r, 100));
  const serverCpu = cpuSeconds(worker) - serverBefore;
  // Over the whole run, start-up included: the machine's average while the simulator ran.
  const machineBusyCores = (machineBusySeconds() - machineBefore) / ((Date.now() - started) / 1000);
  let report: SimulationReport;
  try {
    report = JSON.parse(readFileSync(json, 'utf8')) as SimulationReport;
  } catch {
    throw new Error(`onsale simulate --processes ${processes} wrote no report:\n${run.output()}`);
  } finally {
    out.remove();
  }
  const busy = {
    clientBusyCores: report.clientCpu.busyCores,
    // nginx's CPU over the whole run (the simulator's start-up included) per second of sending: a little high.
    serverBusyCores: serverCpu / report.clientCpu.sendSec,
    machineBusyCores,
  };
  return {
    name: `onsale simulate --processes ${processes}`,
    requests: report.totals.attempts,
    requestsPerSec: report.requestsPerSec,
    cpuMsPerRequest: report.clientCpuMsPerRequest,
    ...busy,
    limit: judge(busy, processes, cpus),
  };
}

/** The pid of the nginx worker (the master's only child). */
async function nginxWorker(master: BenchProcess): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const worker = childrenOf(master.pid)[0];
    if (worker) return worker.pid;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nginx (pid ${master.pid}) started no worker:\n${master.output()}`);
}
