/**
 * The module structure of src/: no import cycles; thrift/ is wire code only, so it imports nothing
 * from server/; the embedded limiters do not depend on the Redis store (they reach a store through
 * the interface in stores/store.ts). Then its vocabulary: every error has a code, and a refusal
 * reason has one spelling.
 *
 * Type-only imports count for cycles like any other (a cycle of types still ties two modules
 * together: neither can be understood, moved or changed apart). Where a container and its element
 * name each other, the container is generic in its element or declares the little it reads of it
 * (`DeadlineHeap` and `Deadlined`, `Flow` and `FlowMember`), so only the element imports the
 * container.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { LIMIT_REFUSAL_REASONS, QUEUE_REFUSAL_REASONS, QueueFullError, QueueTimeoutError, REFUSAL_REASONS, StoreUnavailableError } from '../src/errors.js';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../src');

/** Static `import … from`, `export … from` and bare `import '…'` of relative paths; group 1: `type`. */
const IMPORT = /^\s*(?:import|export)\s+(type\s)?[^;'"]*?(?:\bfrom\s*)?['"](\.{1,2}\/[^'"]+)['"]/gm;

interface Edge {
  target: string;
  typeOnly: boolean;
}

/** Every module of src/ (paths relative to src/, `.ts`) and the src/ modules it imports. */
function importGraph(): Map<string, Edge[]> {
  const graph = new Map<string, Edge[]>();
  const files = readdirSync(SRC, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'));
  for (const file of files) {
    const text = readFileSync(join(SRC, file), 'utf8');
    const edges: Edge[] = [];
    for (const m of text.matchAll(IMPORT)) {
      const target = relative(SRC, resolve(SRC, dirname(file), m[2]!)).replace(/\.js$/, '.ts');
      if (!target.startsWith('..')) edges.push({ target, typeOnly: m[1] !== undefined });
    }
    graph.set(file, edges);
  }
  return graph;
}

/** The graph's edges, type-only imports included (see the top of the file). */
function targets(graph: Map<string, Edge[]>): Map<string, string[]> {
  return new Map([...graph].map(([from, edges]) => [from, edges.map((e) => e.target)]));
}

/** Cycles of the graph (one per back edge of a depth-first walk: none iff the graph has no cycle), each as a path back to its start. */
function cycles(graph: Map<string, string[]>): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (node: string): void => {
    state.set(node, 'open');
    path.push(node);
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === 'open') found.push([...path.slice(path.indexOf(next)), next]);
      else if (!state.has(next)) visit(next);
    }
    path.pop();
    state.set(node, 'done');
  };
  for (const node of [...graph.keys()].sort()) if (!state.has(node)) visit(node);
  return found;
}

describe('structure of src/', () => {
  const graph = importGraph();

  test('the graph is read (sanity: a known import is seen)', () => {
    expect(graph.get('index.ts')).toContainEqual({ target: 'clock.ts', typeOnly: false });
    expect(graph.get(join('fair', 'fair-call.ts'))).toContainEqual({ target: join('fair', 'flow.ts'), typeOnly: true });
  });

  test('src/ has no import cycles, type-only imports included', () => {
    expect(cycles(targets(graph)).map((c) => c.join(' → '))).toEqual([]);
  });

  test('the cycle finder finds a cycle of type-only imports (sanity)', () => {
    const typeOnly = (target: string): Edge[] => [{ target, typeOnly: true }];
    const pair = new Map([
      ['a.ts', typeOnly('b.ts')],
      ['b.ts', typeOnly('a.ts')],
    ]);
    expect(cycles(targets(pair))).toEqual([['a.ts', 'b.ts', 'a.ts']]);
  });

  test('nothing under limiters/ reaches the Redis store or ioredis, directly or through other modules', () => {
    const reached = new Set<string>();
    const visit = (file: string): void => {
      if (reached.has(file)) return;
      reached.add(file);
      for (const e of graph.get(file) ?? []) visit(e.target);
    };
    for (const file of graph.keys()) if (file.startsWith(`limiters${sep}`)) visit(file);
    expect(reached.size).toBeGreaterThan(10);
    expect(reached).toContain(join('stores', 'store.ts'));
    const redis = [...reached].filter(
      (f) => f.startsWith(join('stores', 'redis-')) || /from\s*['"]ioredis['"]|import\(\s*['"]ioredis['"]/.test(readFileSync(join(SRC, f), 'utf8')),
    );
    expect(redis).toEqual([]);
    // The check sees a Redis dependency where there is one.
    expect(/import\(\s*['"]ioredis['"]/.test(readFileSync(join(SRC, 'stores', 'redis-store.ts'), 'utf8'))).toBe(true);
  });

  test('thrift/ imports nothing from server/', () => {
    const wrong = [...graph].flatMap(([from, edges]) =>
      from.startsWith('thrift/') ? edges.filter((e) => e.target.startsWith('server/')).map((e) => `${from} → ${e.target}`) : [],
    );
    expect(wrong).toEqual([]);
  });
});

describe('the vocabulary of src/', () => {
  test('every exported error class has a stable machine-readable code', () => {
    const files = readdirSync(SRC, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
    const missing: string[] = [];
    let classes = 0;
    for (const file of files) {
      const text = readFileSync(join(SRC, file), 'utf8');
      for (const m of text.matchAll(/^export class (\w+) extends Error \{([\s\S]*?)^\}/gm)) {
        classes++;
        if (!/readonly code = (?:'[A-Z_]+' as const|refusalCode\(this\.reason\));/.test(m[2]!)) missing.push(`${file}: ${m[1]}`);
      }
    }
    expect(classes).toBeGreaterThanOrEqual(12);
    expect(missing).toEqual([]);
  });

  test("a refusal error's code is its reason upper-cased, and its reason is one of REFUSAL_REASONS", () => {
    for (const error of [new QueueFullError(1), new QueueTimeoutError(1, 2, false), new StoreUnavailableError('k')]) {
      expect(REFUSAL_REASONS).toContain(error.reason);
      expect(error.code).toBe(error.reason.toUpperCase());
    }
    expect(QUEUE_REFUSAL_REASONS.every((r) => (REFUSAL_REASONS as readonly string[]).includes(r))).toBe(true);
    expect(LIMIT_REFUSAL_REASONS.every((r) => (REFUSAL_REASONS as readonly string[]).includes(r))).toBe(true);
  });

  test('no former spelling of a refusal reason is left in src/', () => {
    const former = /queueFull|waitLimit|storeUnavailable|wait_limit|wait-limit|queue-full|store-unavailable|'timeout' \| 'aborted'/;
    const files = readdirSync(SRC, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
    expect(files.filter((f) => former.test(readFileSync(join(SRC, f), 'utf8')))).toEqual([]);
  });
});
