import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { openQueue, openStorage, openWaitingRoom } from '../../src/adapters/index.js';
import { openPaymentProvider } from '../../src/adapters/payments/index.js';
import { loadConfig } from '../../src/config.js';
import type { WaitingRoom } from '../../src/ports/waiting-room.js';
import { buildApp } from '../../src/web/app.js';
import { ADMIN_TOKEN, tempDir } from './processes.js';

/** The web app built in this process, its waiting room, and how to close them all. */
export interface InProcessApp {
  app: FastifyInstance;
  room: WaitingRoom;
  /** Closes the app, then its adapters, and removes its folder. */
  close(): Promise<void>;
}

/**
 * Builds the web app in this process (from the sources under test) over its own SQLite folder, with the
 * settings of `env` besides, silent. Not listening: `app.listen` serves it, `app.inject` asks Fastify's
 * routes without passing the server's own handler (and so the fast paths).
 */
export async function openInProcessApp(env: Record<string, string> = {}): Promise<InProcessApp> {
  const dir = tempDir();
  const config = loadConfig({}, { ...env, ONSALE_DATA_DIR: dir.path });
  const storage = await openStorage(config.databaseUrl);
  const queue = await openQueue(config.queueUrl, config);
  const room = await openWaitingRoom(config.databaseUrl);
  const closeAdapters = async () => {
    await Promise.all([storage.close(), queue.close(), room.close()]);
    dir.remove();
  };
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
    return {
      app: web.app,
      room,
      close: async () => {
        try {
          await web.app.close();
        } finally {
          await closeAdapters();
        }
      },
    };
  } catch (error) {
    await closeAdapters();
    throw error;
  }
}

/**
 * Builds the web app in this process, hands it, ready, to `use`, and closes everything after: for reading
 * what the routes declare (the OpenAPI document, the registered routes) without starting a server.
 */
export async function withInProcessApp<T>(use: (app: FastifyInstance) => Promise<T>): Promise<T> {
  const { app, close } = await openInProcessApp();
  try {
    await app.ready();
    return await use(app);
  } finally {
    await close();
  }
}
