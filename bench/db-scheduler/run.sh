#!/usr/bin/env bash
# Builds (when needed) and runs the db-scheduler benchmark harness; see
# bench/queues/PROTOCOL.md for the arguments and the JSON it prints last on stdout.
# Usage: bash bench/db-scheduler/run.sh --database-url URL --schema NAME --instances N \
#          --tasks K --concurrency C --poll-interval-ms P --delay-samples S
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
jar="$here/target/db-scheduler-bench.jar"
lib="$here/target/lib"

fail() { echo "db-scheduler bench: $*" >&2; exit 1; }

command -v java >/dev/null || fail "java not found on PATH (Java 17 is needed)"

# Rebuild when the jar or its dependencies are missing or any source is newer than the jar.
if [[ ! -f "$jar" || ! -d "$lib" || -n "$(find "$here/pom.xml" "$here/src" -newer "$jar" -print -quit)" ]]; then
  command -v mvn >/dev/null || fail "mvn not found on PATH (needed to build the harness)"
  echo "db-scheduler bench: building with maven" >&2
  (cd "$here" && mvn -q -B -Dmaven.repo.local="$repo/.cache/m2" package) >&2 \
    || fail "maven build failed (see the output above)"
  [[ -f "$jar" ]] || fail "build did not produce $jar"
  touch "$jar"
fi

exec java -cp "$jar:$lib/*" bench.DbSchedulerBench "$@"
