/**
 * One child process of `onsale simulate --processes N` (forked by processes.ts, with an IPC channel): it
 * receives its share of the crowd, says it is ready, plays it from the shared opening instant on its own
 * keep-alive pools, reports its counts four times a second, and sends everything it saw when all is final.
 * It exits when the parent goes away, so that no child outlives a killed simulator.
 */
import { playShare, type ShareOptions } from './play.js';
import type { ChildMessage, ParentMessage } from './processes.js';

process.title = 'onsale-simulate-child';

function send(message: ChildMessage): void {
  process.send!(message);
}

let share: Omit<ShareOptions, 't0'> | null = null;

process.on('disconnect', () => process.exit(0));
process.on('message', (message: ParentMessage) => {
  if (message.type === 'share') {
    share = message.share;
    send({ type: 'ready' });
    return;
  }
  if (message.type === 'go' && share) {
    const playing = playShare({ ...share, t0: message.t0 });
    const progress = setInterval(
      () => send({ type: 'progress', counts: { ...playing.counts }, window: playing.takeWindow() }),
      250,
    );
    void playing.sent.then(() => send({ type: 'sent' }));
    playing.done.then(
      (result) => {
        clearInterval(progress);
        send({ type: 'progress', counts: { ...playing.counts }, window: playing.takeWindow() });
        // Exits once the result is written to the channel, which a large crowd's result takes a while to.
        process.send!({ type: 'done', result } satisfies ChildMessage, () => process.exit(0));
      },
      (error: unknown) => {
        process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
        process.exit(1);
      },
    );
  }
});
