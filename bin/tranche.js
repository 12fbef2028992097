#!/usr/bin/env node
// tranche's command line. The source is TypeScript, run by Node's built-in type stripping
// (Node 22.18+ / 24 LTS), so there is no build step.

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
  process.stderr.write(
    `tranche: needs Node.js 22.18 or later (this is ${process.version}). ` +
      'Run it as `npx tranche …` or `npm run tranche -- …` in the project, which use its own Node 24.\n',
  );
  process.exit(2);
}

// `serve` runs for hours: V8's default young generation and lazy old-space growth would let
// it hold 300-400 MB of mostly garbage. It restarts itself in place (same process id, so
// signals and supervisors are unaffected) with a bounded heap, unless heap flags were given
// in NODE_OPTIONS or on the node command line. Its live heap stays well under 100 MB
// (docs/benchmarks.md, peak memory). With a 256 MB old space V8 grows the heap by only 1.3x
// per full collection: about 20 MB of live objects then meant a full collection every 200 ms
// and half the instance's CPU (docs/benchmarks.md); growing by 2x keeps the same bound.
const HEAP_FLAGS = ['--max-semi-space-size=16', '--max-old-space-size=256', '--heap-growing-percent=100'];
const command = process.argv.slice(2).find((a) => !a.startsWith('-'));
const heapFlagGiven = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].some((a) =>
  /^--max-(old|semi)-space-size/.test(a),
);
// glibc's malloc raises its mmap threshold each time a large block is freed, up to 32 MB, after
// which buffers of a few hundred kB (Kafka requests and fetches) come from its heap and leave
// it fragmented: the peak RSS of one instance varied from 201 to 249 MB between identical runs.
// A fixed threshold of 128 kB (glibc's initial value) hands such buffers back to the system
// when freed: 204-226 MB (docs/benchmarks.md). An explicit setting in the environment wins;
// other C libraries ignore the variable.
const MALLOC_ENV = { MALLOC_MMAP_THRESHOLD_: '131072' };
if (command === 'serve' && !heapFlagGiven && typeof process.execve === 'function') {
  process.execve(process.execPath, [process.execPath, ...HEAP_FLAGS, ...process.execArgv, ...process.argv.slice(1)], {
    ...MALLOC_ENV,
    ...process.env,
  });
}

const { main } = await import('../src/cli/main.ts');
const code = await main(process.argv.slice(2));
process.exitCode = code;
// Give pending log writes a moment, then leave even if a client keeps a socket open.
setTimeout(() => process.exit(code), 200).unref();
