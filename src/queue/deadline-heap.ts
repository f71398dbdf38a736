/**
 * A binary min-heap of waiters ordered by deadline, so the one timer of a queue can be armed for
 * the earliest deadline in O(1) and a refused or admitted waiter leaves in O(log n).
 */
import type { Nanos } from '../clock.js';

/** What the heap reads and keeps in each of its entries (a waiting call of any queue). */
export interface Deadlined {
  /** When the entry is due. */
  readonly deadline: Nanos;
  /** Position in the heap (maintained by the heap); -1 when absent. */
  heapIndex: number;
}

/** Min-heap of waiters by `deadline`; each waiter's `heapIndex` tracks its position (-1: absent). */
export class DeadlineHeap<W extends Deadlined> {
  private readonly heap: W[] = [];

  /** The waiter with the earliest deadline. */
  peek(): W | undefined {
    return this.heap[0];
  }

  /** Inserts a waiter. */
  push(w: W): void {
    w.heapIndex = this.heap.length;
    this.heap.push(w);
    this.up(w.heapIndex);
  }

  /** Removes and returns the earliest. */
  pop(): W | undefined {
    const top = this.heap[0];
    if (top !== undefined) this.delete(top);
    return top;
  }

  /** Removes a waiter wherever it is. */
  delete(w: W): void {
    const i = w.heapIndex;
    if (i < 0) return;
    w.heapIndex = -1;
    const last = this.heap.pop()!;
    if (last === w) return;
    this.heap[i] = last;
    last.heapIndex = i;
    this.up(i);
    this.down(last.heapIndex);
  }

  private up(i: number): void {
    const heap = this.heap;
    const w = heap[i]!;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent]!;
      if (p.deadline <= w.deadline) break;
      heap[i] = p;
      p.heapIndex = i;
      i = parent;
    }
    heap[i] = w;
    w.heapIndex = i;
  }

  private down(i: number): void {
    const heap = this.heap;
    const n = heap.length;
    const w = heap[i]!;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && heap[child + 1]!.deadline < heap[child]!.deadline) child++;
      const c = heap[child]!;
      if (c.deadline >= w.deadline) break;
      heap[i] = c;
      c.heapIndex = i;
      i = child;
    }
    heap[i] = w;
    w.heapIndex = i;
  }
}
