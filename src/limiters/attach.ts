/**
 * Rebuilds any limiter from its descriptor, whatever its kind: what a worker thread calls with the
 * descriptors it was handed, without knowing which algorithms the server was configured with.
 */
import type { Clock } from '../clock.js';
import { AdaptiveConcurrencyLimit } from './adaptive-concurrency-limit.js';
import { ConcurrencyLimit } from './concurrency-limit.js';
import { FixedWindow } from './fixed-window.js';
import type { LimiterDescriptor } from './limiter.js';
import { TokenBucket } from './token-bucket.js';

/** Any of the four limiters. */
export type AnyLimiter = TokenBucket | FixedWindow | ConcurrencyLimit | AdaptiveConcurrencyLimit;

/**
 * Attaches to the limiter `descriptor` describes (from `share()`), in this thread.
 * @throws TypeError for a descriptor that is not one.
 */
export function attachLimiter(descriptor: LimiterDescriptor, options: { clock?: Clock } = {}): AnyLimiter {
  if (descriptor === null || typeof descriptor !== 'object') throw new TypeError('descriptor must come from share()');
  switch (descriptor.kind) {
    case 'token-bucket':
      return TokenBucket.attach(descriptor, options);
    case 'fixed-window':
      return FixedWindow.attach(descriptor, options);
    case 'concurrency':
      return ConcurrencyLimit.attach(descriptor, options);
    case 'adaptive-concurrency':
      return AdaptiveConcurrencyLimit.attach(descriptor, options);
    default:
      throw new TypeError(`descriptor.kind must be a limiter kind, got ${String((descriptor as { kind: unknown }).kind)}`);
  }
}
