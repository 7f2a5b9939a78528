import type { FastifyInstance } from 'fastify';
import type { Storage } from '../../ports/storage.js';
import { withAvailability, type Lookups } from '../lookups.js';
import { errorResponses } from '../errors.js';
import { eventList, eventParams, eventView } from '../schemas.js';

interface EventsOptions {
  storage: Storage;
  lookups: Lookups;
}

/** The public reads of events: the list, and one event with the tickets left. */
export async function eventRoutes(app: FastifyInstance, { storage, lookups }: EventsOptions) {
  app.get(
    '/api/events',
    {
      schema: {
        tags: ['public'],
        summary: 'The events, by the time their sales open',
        response: { 200: eventList, ...errorResponses('rate_limited', 'internal_error', 'unavailable') },
      },
    },
    async () => ({ events: await storage.listEvents() }),
  );

  app.get<{ Params: { eventId: string } }>(
    '/api/events/:eventId',
    {
      schema: {
        tags: ['public'],
        summary: 'An event, with the tickets left of each type',
        params: eventParams,
        response: {
          200: eventView,
          ...errorResponses('invalid_request', 'not_found', 'rate_limited', 'internal_error', 'unavailable'),
        },
      },
    },
    async (request) => {
      const event = await lookups.eventOr404(request.params.eventId);
      return withAvailability(event, await lookups.availability(event.id));
    },
  );
}
