// The example service of thrift-queue-limiter: one method of every kind, used by the tests, the
// benchmarks and the demo. Regenerate the code with ./generate.sh after editing.

namespace js calculator
namespace py calculator

exception DivideByZero {
  1: string message
}

struct Point {
  1: i32 x,
  2: i32 y,
  3: optional string label,
}

service Calculator {
  // Returns a value.
  i32 add(1: i32 a, 2: i32 b),

  // Returns its argument: the benchmark of a trivial call.
  binary echo(1: binary data),

  // Returns nothing.
  void ping(),

  // No reply at all.
  oneway void record(1: string event),

  // Declares an exception.
  i32 divide(1: i32 a, 2: i32 b) throws (1: DivideByZero err),

  // Takes and returns a struct: `p` moved by (dx, dy), its label kept.
  Point translate(1: Point p, 2: i32 dx, 3: i32 dy),

  // Burns about `micros` microseconds of CPU; returns a checksum of the work.
  i64 work(1: i32 micros),

  // Waits `ms` milliseconds without using the CPU (an I/O-bound call), then returns `ms`.
  i32 sleep(1: i32 ms),

  // Fails on purpose: 'throw' (synchronous throw), 'reject-null' (promise rejected with null),
  // 'bad-result' (a result of the wrong type).
  string fail(1: string how),

  // How many times each method ran in this handler instance (counts every method, this one too).
  map<string, i64> counters(),
}
