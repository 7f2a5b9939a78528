import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { openQueue, openStorage, openWaitingRoom } from '../../src/adapters/index.js';
import { openPaymentProvider } from '../../src/adapters/payments/index.js';
import { loadConfig } from '../../src/config.js';
import { buildApp } from '../../src/web/app.js';
import { ADMIN_TOKEN, tempDir } from './processes.js';

/**
 * Builds the web app in this process (from the sources under test) over its own SQLite folder, hands it,
 * ready, to `use`, and closes everything after: for reading what the routes declare (the OpenAPI document,
 * the registered routes) without starting a server.
 */
export async function withInProcessApp<T>(use: (app: FastifyInstance) => Promise<T>): Promise<T> {
  const dir = tempDir();
  const config = loadConfig({}, { ONSALE_DATA_DIR: dir.path });
  const storage = await openStorage(config.databaseUrl);
  const queue = await openQueue(config.queueUrl, config);
  const room = await openWaitingRoom(config.databaseUrl);
  try {
    await Promise.all([storage.migrate(), queue.migrate(), room.migrate()]);
    const web = buildApp({
      config,
      storage,
      room,
      payments: await openPaymentProvider(config, storage),
      queue,
      adminToken: ADMIN_TOKEN,
      logger: pino({ level: 'silent' }),
    });
    try {
      await web.app.ready();
      return await use(web.app);
    } finally {
      await web.app.close();
    }
  } finally {
    await Promise.all([storage.close(), queue.close(), room.close()]);
    dir.remove();
  }
}
