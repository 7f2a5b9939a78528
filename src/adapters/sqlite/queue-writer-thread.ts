/**
 * The SQLite queue's writer thread (queue-writer.ts, ThreadedWriter): owns one connection to the queue's file
 * and runs each group commit it is sent, one at a time, answering once it is durable.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { guarded, openSqlite } from './database.js';
import { describeFailure, QueueWriter, type WriteAnswer, type WriteMessage } from './queue-writer.js';

const port = parentPort!;
let writer: QueueWriter | null = null;
// One write at a time, in the order sent: the web server sends the next group once this one is answered.
let previous: Promise<unknown> = Promise.resolve();

port.on('message', (message: WriteMessage) => {
  previous = previous.then(async () => {
    let answer: WriteAnswer;
    try {
      writer ??= new QueueWriter(guarded(() => openSqlite((workerData as { url: string }).url)));
      answer = { id: message.id, results: await writer.write(message.requests) };
    } catch (error) {
      answer = { id: message.id, error: describeFailure(error) };
    }
    port.postMessage(answer);
  });
});
