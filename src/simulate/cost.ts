import type { SimulationReport } from './run.js';
import { int } from '../shared/format.js';

/**
 * The simulator's own cost, and whether it was the limit: a simulator whose processes were busy nearly all the
 * time could not send faster, whatever the server could take.
 */
export function clientCpuLine(r: SimulationReport): string {
  const c = r.clientCpu;
  const busyShare = c.busyCores / Math.min(c.processes, c.cpus);
  const verdict =
    r.options.arrival !== 'burst'
      ? `the --arrival ${r.options.arrival} paced the requests`
      : busyShare >= 0.85
        ? 'the simulator was busy nearly all the time: it was likely the limit (try --processes)'
        : c.machineBusyCores !== null && c.machineBusyCores >= 0.85 * c.cpus
          ? `this machine's ${c.cpus} CPUs were full (${c.machineBusyCores.toFixed(2)} CPU-s per second, all ` +
            'processes): the simulator could not get more of them, nor could a server on this machine'
          : 'the simulator had CPU to spare: the server (or the network) was the limit';
  return (
    `simulator CPU ${r.clientCpuMsPerRequest.toFixed(3)} ms per request ` +
    `(one core of it sends about ${int(r.clientRequestsPerCoreSec)} req/s); ${c.processes} process(es) used ` +
    `${c.busyCores.toFixed(2)} CPU-s per second while sending: ${verdict}`
  );
}
