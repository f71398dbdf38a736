/**
 * The shared-memory layouts: the checks `defineLayout` makes, that every layout of the library
 * passes them when its module loads, and that modules working on shared memory name their words
 * through a layout (the convention at the top of src/shared/layout.ts).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, test } from 'vitest';
import { defineLayout } from '../../src/shared/layout.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** The .ts modules of src/ and workers/, with their text. */
function modules(): { file: string; text: string }[] {
  return ['src', 'workers'].flatMap((dir) =>
    readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
      .map((f) => ({ file: join(dir, f), text: readFileSync(join(ROOT, dir, f), 'utf8') })),
  );
}

describe('shared-memory layouts', () => {
  test('defineLayout returns the layout frozen, and refuses a word outside BYTES, overlapping words or spans, and a size that is not a multiple of 8, naming the layout and the field', () => {
    const ok = defineLayout('demo', { BYTES: 32, I32: { A: 0, B: 1 }, I64: { C: 1, D: 2 }, SPANS: { D: 2 } });
    expect(ok).toEqual({ BYTES: 32, I32: { A: 0, B: 1 }, I64: { C: 1, D: 2 } });
    expect(Object.isFrozen(ok) && Object.isFrozen(ok.I32) && Object.isFrozen(ok.I64)).toBe(true);
    expect(() => defineLayout('demo', { BYTES: 32, I32: { A: 0 }, I64: { C: 4 } })).toThrow(
      /^demo: BigInt64 word 4 \(C\) \(bytes 32–40\) lies outside its 32 bytes$/,
    );
    expect(() => defineLayout('demo', { BYTES: 32, I32: { A: 8 }, I64: {} })).toThrow(/^demo: Int32 word 8 \(A\) \(bytes 32–36\) lies outside/);
    expect(() => defineLayout('demo', { BYTES: 32, I32: {}, I64: { H: 2 }, SPANS: { H: 3 } })).toThrow(
      /^demo: BigInt64 word 2 \(H × 3\) \(bytes 16–40\) lies outside/,
    );
    expect(() => defineLayout('demo', { BYTES: 32, I32: { A: 3 }, I64: { C: 1 } })).toThrow(/^demo: Int32 word 3 \(A\) overlaps BigInt64 word 1 \(C\)$/);
    expect(() => defineLayout('demo', { BYTES: 32, I32: { A: 1, B: 1 }, I64: {} })).toThrow(/^demo: Int32 word 1 \(A\) overlaps Int32 word 1 \(B\)$/);
    expect(() => defineLayout('demo', { BYTES: 32, I32: { A: 4 }, I64: { H: 0 }, SPANS: { H: 3 } })).toThrow(/overlaps/);
    expect(() => defineLayout('demo', { BYTES: 12, I32: { A: 0 }, I64: {} })).toThrow(/^demo: BYTES \(12\) must be a positive multiple of 8$/);
    expect(() => defineLayout('demo', { BYTES: 16, I32: { A: -1 }, I64: {} })).toThrow(/lies outside/);
  });

  test('every layout of the library passes its checks when its module loads, and is named <Thing>Layout', async () => {
    const owners = modules().filter((m) => m.file !== join('src', 'shared', 'layout.ts') && /\bdefineLayout\(/.test(m.text));
    const names: string[] = [];
    for (const { file, text } of owners) {
      const exported = (await import(pathToFileURL(join(ROOT, file)).href)) as Record<string, unknown>;
      const defined = [...text.matchAll(/^export const (\w+) = defineLayout\(/gm)].map((m) => m[1]!);
      // Every call is an exported constant: a layout made any other way would escape the naming check.
      expect(defined.length, file).toBe(text.match(/\bdefineLayout\(/g)!.length);
      for (const name of defined) expect(Object.isFrozen(exported[name]), `${file}: ${name}`).toBe(true);
      names.push(...defined);
    }
    expect(names.filter((n) => !/^[A-Z]\w*Layout$/.test(n))).toEqual([]);
    for (const expected of [
      'LimiterLayout',
      'LimiterRowLayout',
      'KeyedTableLayout',
      'KeyedRowLayout',
      'KeyedSlotLayout',
      'RemotePoolLayout',
      'HeartbeatLayout',
      'DemoCountersLayout',
    ]) {
      expect(names).toContain(expected);
    }
  });

  test('modules that work on shared memory declare no word-index map outside a layout', () => {
    const shared = modules().filter((m) => /\bAtomics\.|\bSharedArrayBuffer\b/.test(m.text));
    expect(shared.length).toBeGreaterThanOrEqual(10);
    const indexMap = /^(?:export )?const (\w+)(?::[^=]+)? = \{\s*[A-Z][A-Z0-9_]*: -?\d/gm;
    expect([...'const I = { MAGIC: 0, POOL: 1 } as const;\nexport const C = {\n  ADMITTED: 24,\n};'.matchAll(indexMap)].map((m) => m[1])).toEqual(['I', 'C']);
    const offenders = shared.flatMap(({ file, text }) => [...text.matchAll(indexMap)].map((m) => `${file}: ${m[1]}`));
    expect(offenders).toEqual([]);
  });
});
