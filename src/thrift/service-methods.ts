/**
 * The methods of a generated service and whether each is oneway, read from the generated code.
 *
 * The generated Processor has a `process_<name>` for every method; the generated Client has a
 * `recv_<name>` for every method that returns (oneway methods have a `send_` only). Knowing the
 * kind lets the server refuse a CALL-typed message for a oneway method: its processor would never
 * write a reply, and the client would wait forever for one.
 */

/** Method name → true when the method is oneway. */
export type ServiceMethods = ReadonlyMap<string, boolean>;

/** A generated service module, as `import()` returns it (CommonJS arrives under `default`). */
export type ServiceModule = Record<string, unknown> & { default?: Record<string, unknown> };

/** The generated Processor class of `service`, or undefined. */
export function processorClass(service: ServiceModule): (new (handler: unknown) => unknown) | undefined {
  const processor = service.Processor ?? service.default?.Processor;
  return typeof processor === 'function' ? (processor as new (handler: unknown) => unknown) : undefined;
}

/** The methods of `service` (inherited ones included), or undefined if it has no Processor. */
export function serviceMethods(service: ServiceModule): ServiceMethods | undefined {
  const processor = processorClass(service);
  if (processor === undefined) return undefined;
  const client = (service.Client ?? service.default?.Client) as { prototype: object } | undefined;
  const returning = new Set<string>();
  for (const name of prototypeNames(client?.prototype)) if (name.startsWith('recv_')) returning.add(name.slice(5));
  const methods = new Map<string, boolean>();
  for (const name of prototypeNames(processor.prototype as object)) {
    // Without a generated Client nothing is known to be oneway: every method is taken to return.
    if (name.startsWith('process_')) methods.set(name.slice(8), client !== undefined && !returning.has(name.slice(8)));
  }
  return methods;
}

function* prototypeNames(proto: object | undefined): Generator<string> {
  for (let o = proto; o !== undefined && o !== null && o !== Object.prototype; o = (Object.getPrototypeOf(o) as object | null) ?? undefined) {
    yield* Object.getOwnPropertyNames(o);
  }
}
