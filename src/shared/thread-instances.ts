/**
 * The instances of shared limits living in this thread, by id: attaching one limit twice in a
 * thread returns the instance it already has, so a thread keeps one queue and one timer per limit.
 * An instance that is garbage collected leaves the registry and gives back what it held of the
 * shared memory (its row of the thread table).
 */
export class ThreadInstances<T extends object, H> {
  private readonly byId = new Map<string, WeakRef<T>>();
  private readonly finalizer: FinalizationRegistry<{ id: string; held: H }>;

  /** @param release gives back what a collected instance held (`held`, as given to {@link add}). */
  constructor(release: (held: H) => void) {
    this.finalizer = new FinalizationRegistry(({ id, held }) => {
      const ref = this.byId.get(id);
      if (ref !== undefined && ref.deref() === undefined) this.byId.delete(id);
      release(held);
    });
  }

  /** The live instance of `id` in this thread, if any. */
  get(id: string): T | undefined {
    return this.byId.get(id)?.deref();
  }

  /** Registers `instance` as this thread's instance of `id`, holding `held` until it is collected. */
  add(id: string, instance: T, held: H): void {
    this.byId.set(id, new WeakRef(instance));
    this.finalizer.register(instance, { id, held });
  }
}
