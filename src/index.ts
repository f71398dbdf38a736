/**
 * thrift-queue-limiter: rate and concurrency limits that queue calls instead of rejecting them,
 * kept in lock-free shared memory so every worker thread enforces one limit.
 */
export { ManualClock, systemClock, type Clock, type Nanos, type TimerHandle } from './clock.js';
export {
  LIMIT_REFUSAL_REASONS,
  QUEUE_REFUSAL_REASONS,
  QueueFullError,
  QueueTimeoutError,
  REFUSAL_REASONS,
  StoreUnavailableError,
  type LimitRefusalReason,
  type QueueRefusalReason,
  type RefusalCounts,
  type RefusalReason,
} from './errors.js';
export type {
  AcquireOptions,
  AdaptiveConcurrencyLimitOptions,
  ConcurrencyLimitOptions,
  ConcurrencySetting,
  FixedWindowOptions,
  FixedWindowSetting,
  QueueOptions,
  RateLimiterOptions,
  RateLimiterSetting,
  StoreOptions,
  TokenBucketOptions,
  TokenBucketSetting,
} from './options.js';
export { createRedisStore, RedisStore, StoreConnectionError } from './stores/redis-store.js';
export type { RedisStoreOptions } from './stores/redis-store-options.js';
export { attachStore, type LimiterStore, type LeaseSettings, type StoreDescriptor, type StoreErrorPolicy } from './stores/store.js';
export type { RemoteSnapshot } from './stores/remote-limit.js';
export { attachLimiter, type AnyLimiter } from './limiters/attach.js';
export { AdaptiveConcurrencyLimit } from './limiters/adaptive-concurrency-limit.js';
export { ConcurrencyLimit } from './limiters/concurrency-limit.js';
export { FixedWindow } from './limiters/fixed-window.js';
export { Limiter, type LimitedEvent, type LimiterDescriptor, type LimiterEvents, type LimiterSnapshot, type RefusedEvent } from './limiters/limiter.js';
export type { Permit } from './limiters/permit.js';
export { TokenBucket } from './limiters/token-bucket.js';
export { RateLimiter, type RateLimiterDescriptor } from './rate-limiter.js';
export {
  createThreadedServer,
  ThreadedServer,
  OVERLOADED,
  ModuleLoadError,
  type CloseOptions,
  type ServerHealth,
  type ServerState,
} from './server/threaded-server.js';
export type { ThreadedServerOptions } from './server/server-options.js';
export type { AdaptiveLimitSettings, HandlerCall, HandlerLimitsConfig, KeyedLimitSpec, LimitSpec, LimitsConfig, QueueBounds } from './limits/method-limits.js';
export type { FlowCall, FlowKeySpec, PerKeySpec } from './limits/call-key.js';
export type { ServerStatsSnapshot, ServerRefusalReason } from './server/stats.js';
export { wrapHandler, ServerOverloadedError } from './handler/wrap-handler.js';
export { FairQueue } from './fair/fair-queue.js';
export type { FairnessOptions, FairQueueOptions, FairRunOptions, HandlerFairnessOptions, LevelOptions } from './fair/fair-options.js';
export type { LevelStats } from './fair/priority-level.js';
export { readArgField } from './thrift/arg-field.js';
export { ExceptionType } from './thrift/application-exception.js';
export type { HandlerContext } from './server/batch.js';
export { limiterMetrics, type LimiterMetricsOptions } from './metrics/prometheus.js';
export { metricsRequestListener, readiness, type MetricsEndpointSource, type Readiness } from './metrics/http-endpoint.js';
export type { FairnessDescription, LimitDescription, LimitsDescription } from './limits/describe-limits.js';
export type { KeyedTokenBucketOptions } from './keyed/keyed-options.js';
export {
  KeyedTokenBucket,
  type KeyedLimitedEvent,
  type KeyedRefusedEvent,
  type KeyedSnapshot,
  type KeyedTokenBucketDescriptor,
  type KeyedTokenBucketEvents,
} from './keyed/keyed-token-bucket.js';
