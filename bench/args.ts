/**
 * Command-line flags of the benchmark scripts: `--help` prints the usage written in the
 * script's own doc comment (its `node bench/…` lines); an unknown flag or a flag without its
 * value prints one line and that usage, and exits 2 before anything is touched.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';

/** The `node bench/…` lines of a script's first doc comment, with their continuation lines. */
export function usageOf(sourceUrl: string): string {
  const comment = readFileSync(fileURLToPath(sourceUrl), 'utf8').split('*/')[0] ?? '';
  const lines = comment.split('\n').map((line) => line.replace(/^\s*\*? ?/, ''));
  const start = lines.findIndex((line) => /^\s*node bench\//.test(line));
  if (start < 0) return 'usage: see the comment at the top of the script';
  const end = lines.findIndex((line, i) => i > start && line.trim() === '');
  // Continuation lines are aligned under the first one, which 'usage: ' moves right.
  const usage = lines.slice(start, end < 0 ? undefined : end).map((line, i) => (i === 0 ? line.trim() : `     ${line}`));
  return `usage: ${usage.join('\n')}`;
}

export function benchArgs<const T extends ParseArgsOptionsConfig>(sourceUrl: string, options: T, argv = process.argv.slice(2)) {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(usageOf(sourceUrl));
    process.exit(0);
  }
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    console.error(`${(error as Error).message.split('\n')[0]}\n${usageOf(sourceUrl)}`);
    process.exit(2);
  }
}

/** `--env KEY=VALUE` flags as an object; a flag without `=` ends the process with exit 2. */
export function envPairs(flags: readonly string[] | undefined): Record<string, string> {
  const pairs: Record<string, string> = {};
  for (const kv of flags ?? []) {
    const eq = kv.indexOf('=');
    if (eq < 1) {
      console.error(`--env takes KEY=VALUE (got "${kv}")`);
      process.exit(2);
    }
    pairs[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return pairs;
}
