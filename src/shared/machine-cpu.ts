import { readFileSync } from 'node:fs';

/**
 * CPU seconds the whole machine has been busy so far, all CPUs and whoever used them (idle and iowait left
 * out), from /proc/stat; null where there is none (not Linux). Read twice, it tells whether the machine's CPUs
 * were full, which neither a load generator nor a server can see from its own CPU time.
 */
export function machineBusySeconds(): number | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
    return (user! + nice! + system! + irq! + softirq! + (steal ?? 0)) / 100;
  } catch {
    return null;
  }
}
