import type { FastifyInstance } from 'fastify';
import type { Storage } from '../../ports/storage.js';
import { withAvailability, type Lookups } from '../lookups.js';
import { eventParams } from '../schemas.js';

interface EventsOptions {
  storage: Storage;
  lookups: Lookups;
}

/** The public reads of events: the list, and one event with the tickets left. */
export async function eventRoutes(app: FastifyInstance, { storage, lookups }: EventsOptions) {
  app.get('/api/events', async () => ({ events: await storage.listEvents() }));

  app.get<{ Params: { eventId: string } }>(
    '/api/events/:eventId',
    { schema: { params: eventParams } },
    async (request) => {
      const event = await lookups.eventOr404(request.params.eventId);
      return withAvailability(event, await lookups.availability(event.id));
    },
  );
}
