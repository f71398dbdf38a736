/**
 * The listeners of a limiter's events, by event name, with the payload type of each, and the
 * `on` / `off` every limiter kind exposes. Smaller than Node's EventEmitter and checked: an unknown event
 * name is a TypeError, and emitting to an event nobody listens to costs one property read, so the
 * front end can skip building the payload.
 */

/** A listener of event `K` of the event map `E`. */
export type Listener<E, K extends keyof E> = (event: E[K]) => void;

/** Listeners of the events of map `E` (event name → payload type). */
export class Listeners<E> {
  private readonly lists: { [K in keyof E]?: Listener<E, K>[] } = {};

  /** @param names every event name of `E`: subscribing to another is a TypeError. */
  constructor(private readonly names: readonly (keyof E)[]) {}

  /** Adds `listener` to `event`. @throws TypeError for an unknown event. */
  on<K extends keyof E>(event: K, listener: Listener<E, K>): void {
    if (!this.names.includes(event)) throw new TypeError(`unknown event ${String(event)}`);
    (this.lists[event] ??= []).push(listener);
  }

  /** Removes one registration of `listener` from `event`, if any. */
  off<K extends keyof E>(event: K, listener: Listener<E, K>): void {
    const list = this.lists[event];
    const i = list?.indexOf(listener) ?? -1;
    if (i >= 0) list!.splice(i, 1);
  }

  /** True while `event` has a listener: build its payload only then. */
  has(event: keyof E): boolean {
    return (this.lists[event]?.length ?? 0) > 0;
  }

  /** Calls every listener of `event` with `payload`, in the order they were added. */
  emit<K extends keyof E>(event: K, payload: E[K]): void {
    const list = this.lists[event];
    if (list !== undefined) for (const l of list) l(payload);
  }
}

/**
 * The `on` / `off` of every limiter kind, over its {@link Listeners}; the kind hands `events` to
 * its admission front end, which emits.
 */
export abstract class EventSource<E> {
  /** @internal The listeners, by event. */
  protected readonly events: Listeners<E>;

  /** @param names every event name of `E`. */
  protected constructor(names: readonly (keyof E)[]) {
    this.events = new Listeners<E>(names);
  }

  /** Subscribes `listener` to `event`. @throws TypeError for an event the limit does not have. */
  on<K extends keyof E>(event: K, listener: Listener<E, K>): this {
    this.events.on(event, listener);
    return this;
  }

  /** Removes a listener added with {@link on}. */
  off<K extends keyof E>(event: K, listener: Listener<E, K>): this {
    this.events.off(event, listener);
    return this;
  }
}
