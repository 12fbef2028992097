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

(await import('../src/stream/kafka.ts')).silenceKafkajsTimerWarning();
const { main } = await import('../src/cli/main.ts');
const code = await main(process.argv.slice(2));
process.exitCode = code;
// Give pending log writes a moment, then leave even if a client keeps a socket open.
setTimeout(() => process.exit(code), 200).unref();
