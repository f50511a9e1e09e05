// Routing a job's messages across the 15-minute token: the pure rules. The same paths with the real discord.js
// REST client against the fake Discord are in update-sink.test.ts, and through the whole bot in front-end.test.ts.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DiscordAPIError } from 'discord.js';
import {
  deliverResult, deliveryRoute, finalTargets, INTERACTION_TOKEN_TTL_MS, isTokenDeadError, isTokenUsable, progressTarget,
  routeFromDelivery, TOKEN_SAFETY_MARGIN_MS, tokenUsableUntil, type FinalTarget, type InteractionRoute,
} from '../../../src/chat/discord/delivery.ts';

const T0 = 1_700_000_000_000;
const MINUTE = 60_000;

function route(overrides: Partial<InteractionRoute> = {}): InteractionRoute {
  return {
    applicationId: '100000000000000001', interactionId: '100000000000000002', token: 'tok', createdAt: T0,
    guildId: '100000000000000003', channelId: '100000000000000004', userId: '100000000000000005',
    ephemeral: false, replyMessageId: '100000000000000006', tokenDead: false, ...overrides,
  };
}

function apiError(code: number, status: number): DiscordAPIError {
  return new DiscordAPIError({ code, message: `error ${code}` }, code, status, 'PATCH', 'http://fake', { body: undefined, files: undefined });
}

describe('delivery rules (pure)', () => {
  test('the token is used until a minute before its 15 minutes are up, and never after Discord refused it', () => {
    assert.equal(INTERACTION_TOKEN_TTL_MS, 15 * MINUTE);
    assert.equal(tokenUsableUntil(route()), T0 + 14 * MINUTE);
    assert.equal(isTokenUsable(route(), T0 + 14 * MINUTE - 1), true);
    assert.equal(isTokenUsable(route(), T0 + 14 * MINUTE), false);
    assert.equal(isTokenUsable(route({ tokenDead: true }), T0 + 1), false);
    assert.equal(tokenUsableUntil(route(), { tokenTtlMs: 1_000, safetyMarginMs: 0 }), T0 + 1_000);
    assert.equal(TOKEN_SAFETY_MARGIN_MS, MINUTE);
  });

  test('progress: the reply by token, then the same message through the channel, else nothing', () => {
    const late = T0 + 20 * MINUTE;
    assert.deepEqual(progressTarget(route(), T0 + MINUTE), { via: 'interaction-reply' });
    assert.deepEqual(progressTarget(route(), late), { via: 'channel-edit', channelId: route().channelId, messageId: route().replyMessageId });
    assert.deepEqual(progressTarget(route({ ephemeral: true }), late), { via: 'none' }, 'ephemeral replies are out of the channel\'s reach');
    assert.deepEqual(progressTarget(route({ replyMessageId: null }), late), { via: 'none' });
  });

  test('result: reply → channel message → DM; no channel for ephemeral requests or DMs', () => {
    const { channelId, userId } = route();
    const early = T0 + MINUTE;
    const late = T0 + 20 * MINUTE;
    const channel: FinalTarget = { via: 'channel-message', channelId: channelId!, userId };
    const dm: FinalTarget = { via: 'direct-message', userId };
    assert.deepEqual(finalTargets(route(), early), [{ via: 'interaction-reply' }, channel, dm]);
    assert.deepEqual(finalTargets(route(), late), [channel, dm]);
    assert.deepEqual(finalTargets(route({ ephemeral: true }), early), [{ via: 'interaction-reply' }, dm]);
    assert.deepEqual(finalTargets(route({ ephemeral: true }), late), [dm]);
    assert.deepEqual(finalTargets(route({ guildId: null }), late), [dm]);
  });

  test('the route is stored as the job\'s DeliveryRoute data and read back; anything else is refused', () => {
    const stored = JSON.parse(JSON.stringify(deliveryRoute(route({ tokenDead: true }))));
    assert.equal(stored.platform, 'discord');
    assert.deepEqual(routeFromDelivery(stored), route({ tokenDead: true }));
    assert.equal(routeFromDelivery({ platform: 'discord', data: { token: 'x' } }), null);
    assert.equal(routeFromDelivery({ platform: 'slack', data: { ...route() } }), null);
    assert.equal(routeFromDelivery(deliveryRoute(route({ userId: 'someone' }))), null);
  });

  test('deliverResult moves on when a path fails and marks a refused token dead', async () => {
    const tried: string[] = [];
    const outcome = await deliverResult(route(), T0 + MINUTE, async (target) => {
      tried.push(target.via);
      if (target.via === 'interaction-reply') throw apiError(50027, 401);
    });
    assert.deepEqual(tried, ['interaction-reply', 'channel-message']);
    assert.equal(outcome.delivered?.via, 'channel-message');
    assert.equal(outcome.route.tokenDead, true);
    assert.ok(isTokenDeadError(outcome.attempts[0]!.error));
    assert.equal(isTokenDeadError(apiError(10003, 404)), false);

    const nowhere = await deliverResult(route({ ephemeral: true }), T0 + 20 * MINUTE, async () => { throw apiError(50007, 403); });
    assert.equal(nowhere.delivered, null);
    assert.deepEqual(nowhere.attempts.map((a) => a.target.via), ['direct-message']);
  });
});
