import { spawn } from 'node:child_process';

/**
 * `onsale-lb`: runs the load balancer (`command`) as its only child, so that the balancer, which knows
 * nothing of onsale, stops with the cluster: SIGTERM or SIGINT are passed on, and the supervisor going away
 * (the IPC channel closing, cli.ts) stops it too. Exits as the balancer does.
 */
export function runBalancerWrapper(command: readonly string[]): void {
  process.title = 'onsale-lb';
  const [file, ...args] = command;
  if (!file) throw new Error('onsale-lb: no balancer command');
  const balancer = spawn(file, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  const stop = () => balancer.kill('SIGTERM');
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  balancer.once('error', (error) => {
    process.stderr.write(`onsale-lb: ${file}: ${error.message}\n`);
    process.exit(1);
  });
  balancer.once('exit', (code, signal) => process.exit(code ?? (signal === 'SIGTERM' ? 0 : 1)));
}
