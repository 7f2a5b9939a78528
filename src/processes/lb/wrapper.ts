import { spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';

/**
 * `onsale-lb`: runs the load balancer (`command`) as its only child, so that the balancer, which knows
 * nothing of onsale, stops with the cluster: SIGTERM or SIGINT are passed on, and the supervisor going away
 * (the IPC channel closing, cli.ts) stops it too. Exits as the balancer does.
 *
 * A wrapper killed by SIGKILL cannot pass anything on: its balancer would keep running, orphaned, serving
 * the port (HAProxy binds with SO_REUSEPORT, so the next one starts beside it) with a configuration that
 * may be stale, and outlive the cluster. So the balancer's pid is kept in `pidFile`, and the next wrapper
 * stops a balancer left there (the same command line) before it starts its own.
 */
export async function runBalancerWrapper(command: readonly string[], pidFile?: string): Promise<void> {
  process.title = 'onsale-lb';
  const [file, ...args] = command;
  if (!file) throw new Error('onsale-lb: no balancer command');
  if (pidFile) await stopLeftover(pidFile, command);
  const balancer = spawn(file, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  if (pidFile && balancer.pid !== undefined) writeFileSync(pidFile, `${balancer.pid}\n`);
  const stop = () => balancer.kill('SIGTERM');
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  balancer.once('error', (error) => {
    process.stderr.write(`onsale-lb: ${file}: ${error.message}\n`);
    process.exit(1);
  });
  balancer.once('exit', (code, signal) => {
    if (pidFile) rmSync(pidFile, { force: true });
    process.exit(code ?? (signal === 'SIGTERM' ? 0 : 1));
  });
}

/** Stops the balancer named in `pidFile` if it still runs `command` (a pid may have been reused). */
async function stopLeftover(pidFile: string, command: readonly string[]): Promise<void> {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim());
  } catch {
    return;
  }
  const runs = () => {
    try {
      return (
        readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ') ===
        command.join(' ')
      );
    } catch {
      return false;
    }
  };
  if (!Number.isInteger(pid) || pid <= 0 || !runs()) return;
  process.stderr.write(`onsale-lb: stopping balancer ${pid}, left running by a wrapper that was killed\n`);
  process.kill(pid, 'SIGTERM');
  for (let waited = 0; runs() && waited < 5_000; waited += 50) await new Promise((r) => setTimeout(r, 50));
  if (runs()) process.kill(pid, 'SIGKILL');
}
