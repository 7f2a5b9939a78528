import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { Bindings, ChildLoggerOptions } from 'pino';
import { buyerIdentity } from '../../domain/buyer.js';
import { OnsaleError } from '../../domain/errors.js';
import { etaSeconds, shownHead, type Line } from '../../domain/waiting-room.js';
import type { WaitingRoom } from '../../ports/waiting-room.js';
import { requireAdminToken } from '../admin-token.js';
import type { Lookups } from '../lookups.js';
import type { RoomReader } from '../room-reader.js';
import { errorResponses } from '../errors.js';
import { ADMIN_SECURITY } from '../openapi.js';
import type { ChallengeSigner } from '../pow-challenge.js';
import {
  challengeBody,
  challengeView,
  eventParams,
  joinBody,
  lineView,
  placeParams,
  placeView,
  roomLimitsBody,
  type RoomLimitsBody,
} from '../schemas.js';
import { neverCache } from '../no-store.js';

const ADMIN_LINE_ERRORS = errorResponses(
  'invalid_request',
  'unauthorized',
  'not_found',
  'rate_limited',
  'internal_error',
  'unavailable',
);

interface QueueOptions {
  lookups: Lookups;
  reader: RoomReader;
  challenges: ChallengeSigner;
}

/** The event of a room request, its room (404 without one) and the buyer's canonical id (400 if invalid). */
async function roomOf(lookups: Lookups, eventId: string, buyerId: string) {
  const event = await lookups.eventOr404(eventId);
  const room = event.waitingRoom;
  if (!room) throw new OnsaleError('not_found', `event ${event.id} has no waiting room`);
  const canonicalBuyerId = buyerIdentity(buyerId, event.buyerIdKind);
  if (canonicalBuyerId instanceof OnsaleError) throw canonicalBuyerId;
  return { event, room, canonicalBuyerId };
}

/** The proof of work a room asks now: the organizer's latest change, else the event's setting. */
async function difficultyOf(reader: RoomReader, eventId: string, room: { powDifficulty?: number }) {
  return (await reader.line(eventId))?.powDifficulty ?? room.powDifficulty ?? 0;
}

/** The waiting room's public endpoints: joining an event's line and reading a place. */
export async function queueRoutes(app: FastifyInstance, { lookups, reader, challenges }: QueueOptions) {
  // A place's answer carries its admission token: no cache may keep it.
  neverCache(app);

  app.post<{ Params: { eventId: string }; Body: { buyerId: string } }>(
    '/api/events/:eventId/queue/challenge',
    {
      schema: {
        tags: ['public'],
        summary: "A proof-of-work challenge for joining the event's waiting room, bound to the buyer",
        params: eventParams,
        body: challengeBody,
        response: {
          200: challengeView,
          ...errorResponses(
            'invalid_request',
            'not_found',
            'payload_too_large',
            'unsupported_media_type',
            'rate_limited',
            'internal_error',
            'unavailable',
          ),
        },
      },
    },
    async (request) => {
      const { event, room, canonicalBuyerId } = await roomOf(
        lookups,
        request.params.eventId,
        request.body.buyerId,
      );
      return challenges.issue(event.id, canonicalBuyerId, await difficultyOf(reader, event.id, room));
    },
  );

  app.post<{
    Params: { eventId: string };
    Body: { buyerId: string; proofOfWork?: { challenge: string; solution: string } };
  }>(
    '/api/events/:eventId/queue',
    {
      schema: {
        tags: ['public'],
        summary: "Take a place in the event's waiting room (one per buyer: others get the same place back)",
        params: eventParams,
        body: joinBody,
        response: {
          201: { ...placeView, description: 'a new place, durable' },
          200: { ...placeView, description: "this buyer's place, taken before" },
          ...errorResponses(
            'invalid_request',
            'not_found',
            'queue_not_open',
            'proof_of_work_required',
            'payload_too_large',
            'unsupported_media_type',
            'rate_limited',
            'internal_error',
            'unavailable',
          ),
        },
      },
    },
    async (request, reply) => {
      const { event, room, canonicalBuyerId } = await roomOf(
        lookups,
        request.params.eventId,
        request.body.buyerId,
      );
      const joinedAt = new Date().toISOString();
      if (joinedAt < room.opensAt) {
        throw new OnsaleError('queue_not_open', `the waiting room opens at ${room.opensAt}`);
      }
      const difficulty = await difficultyOf(reader, event.id, room);
      if (difficulty > 0) {
        const problem = challenges.check(request.body.proofOfWork, {
          eventId: event.id,
          canonicalBuyerId,
          difficulty,
        });
        if (problem) throw new OnsaleError('proof_of_work_required', problem);
      }
      const { answer, created } = await reader.join({
        eventId: event.id,
        buyerId: request.body.buyerId,
        canonicalBuyerId,
        room,
        salesOpenAt: event.salesOpenAt,
        joinedAt,
      });
      return reply.code(created ? 201 : 200).send(answer);
    },
  );

  app.get<{ Params: { placeId: string } }>(
    '/api/queue/:placeId',
    {
      // The hot path of a rush: a read logs only when it fails, so its logger is made only then.
      childLoggerFactory: lazyChildLogger,
      schema: {
        tags: ['public'],
        summary: 'Read a place in line: position, people ahead, estimated wait, and once admitted the token',
        params: placeParams,
        response: {
          200: placeView,
          ...errorResponses('invalid_request', 'not_found', 'rate_limited', 'internal_error', 'unavailable'),
        },
      },
    },
    async (request) => {
      const answer = await reader.read(request.params.placeId);
      if (!answer) throw new OnsaleError('not_found', `no place ${request.params.placeId}`);
      return answer;
    },
  );
}

/**
 * A request's logger that makes its pino child (the request id bound, the redaction set up: a few µs and
 * garbage on every request) only when something is logged. The lines are the same as with Fastify's own.
 */
function lazyChildLogger(
  logger: FastifyBaseLogger,
  bindings: Bindings,
  options: ChildLoggerOptions,
): FastifyBaseLogger {
  let child: FastifyBaseLogger | undefined;
  const real = () => (child ??= logger.child(bindings, options));
  return {
    get level() {
      return child?.level ?? options.level ?? logger.level;
    },
    set level(level: string) {
      real().level = level;
    },
    fatal: (...args: Parameters<FastifyBaseLogger['fatal']>) => real().fatal(...args),
    error: (...args: Parameters<FastifyBaseLogger['error']>) => real().error(...args),
    warn: (...args: Parameters<FastifyBaseLogger['warn']>) => real().warn(...args),
    info: (...args: Parameters<FastifyBaseLogger['info']>) => real().info(...args),
    debug: (...args: Parameters<FastifyBaseLogger['debug']>) => real().debug(...args),
    trace: (...args: Parameters<FastifyBaseLogger['trace']>) => real().trace(...args),
    silent: (...args: Parameters<FastifyBaseLogger['silent']>) => real().silent(...args),
    child: (more: Bindings, moreOptions?: ChildLoggerOptions) => real().child(more, moreOptions),
  } as FastifyBaseLogger;
}

interface QueueAdminOptions {
  lookups: Lookups;
  room: WaitingRoom;
  reader: RoomReader;
  adminToken: string;
}

/** The organizer's view of a line, and the limits they may change during the sale (admin token). */
export async function queueAdminRoutes(
  app: FastifyInstance,
  { lookups, room, reader, adminToken }: QueueAdminOptions,
) {
  app.addHook('onRequest', requireAdminToken(adminToken));

  app.get<{ Params: { eventId: string } }>(
    '/api/events/:eventId/queue',
    {
      schema: {
        tags: ['admin'],
        summary: "The event's waiting line: its length per state, its limits and its speed",
        security: ADMIN_SECURITY,
        params: eventParams,
        response: { 200: lineView, ...ADMIN_LINE_ERRORS },
      },
    },
    async (request) => {
      const event = await lookups.eventOr404(request.params.eventId);
      if (!event.waitingRoom) throw new OnsaleError('not_found', `event ${event.id} has no waiting room`);
      return lineStats(event.id, await reader.line(event.id), event.waitingRoom);
    },
  );

  app.patch<{ Params: { eventId: string }; Body: RoomLimitsBody }>(
    '/api/events/:eventId/queue',
    {
      schema: {
        tags: ['admin'],
        summary:
          "Change the waiting room's limits during the sale: maxActiveBuyers, maxAdmittedPerMinute, powDifficulty",
        security: ADMIN_SECURITY,
        params: eventParams,
        body: roomLimitsBody,
        response: {
          200: { ...lineView, description: 'the line, with its new limits' },
          ...errorResponses(
            'invalid_request',
            'unauthorized',
            'not_found',
            'payload_too_large',
            'unsupported_media_type',
            'rate_limited',
            'internal_error',
            'unavailable',
          ),
        },
      },
    },
    async (request) => {
      const event = await lookups.eventOr404(request.params.eventId);
      if (!event.waitingRoom) throw new OnsaleError('not_found', `event ${event.id} has no waiting room`);
      const line = await room.setLimits(event.id, request.body);
      if (!line) throw new OnsaleError('not_found', `nobody has joined the line of event ${event.id} yet`);
      return lineStats(event.id, line, event.waitingRoom);
    },
  );
}

/** What the admin sees of a line: its length per state, its limits and its speed. */
function lineStats(
  eventId: string,
  line: Line | null,
  room: { maxActiveBuyers: number; maxAdmittedPerMinute: number | null; powDifficulty?: number },
) {
  const now = Date.now();
  if (!line) {
    return {
      eventId,
      opened: false,
      prequeue: 0,
      waiting: 0,
      soldOutPlaces: 0,
      admitted: 0,
      active: 0,
      expired: 0,
      soldOut: false,
      maxActiveBuyers: room.maxActiveBuyers,
      maxAdmittedPerMinute: room.maxAdmittedPerMinute,
      powDifficulty: room.powDifficulty ?? 0,
      admittedLastMinute: 0,
      etaOfLastSeconds: null,
    };
  }
  const base = line.progress.filter((s) => s[0] <= now - 60_000).pop();
  const waiting = line.opened ? line.tail - line.head : 0;
  return {
    eventId,
    opened: line.opened,
    prequeue: line.opened ? 0 : line.prequeued,
    waiting: line.soldOut ? 0 : waiting,
    soldOutPlaces: line.soldOut ? waiting : 0,
    admitted: line.admitted,
    active: line.active,
    expired: line.expired,
    soldOut: line.soldOut,
    maxActiveBuyers: line.maxActiveBuyers,
    maxAdmittedPerMinute: line.maxAdmittedPerMinute,
    powDifficulty: line.powDifficulty,
    admittedLastMinute: line.admitted - (base ? base[2] : 0),
    etaOfLastSeconds: waiting > 0 ? etaSeconds(line.tail - shownHead(line, now), line, now) : null,
  };
}
