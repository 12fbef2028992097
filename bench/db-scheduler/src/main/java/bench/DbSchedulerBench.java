/*
 * Benchmark harness for db-scheduler (com.github.kagkarlsson:db-scheduler) on PostgreSQL,
 * following bench/queues/PROTOCOL.md.
 *
 * It measures, in a schema of its own:
 *  1. claim-and-complete throughput: K one-time tasks (due now, no-op handler) are scheduled
 *     through SchedulerClient.scheduleBatch (not timed), then N scheduler instances, each a
 *     separate JVM (see Instance.java) with threads(C), pollingInterval(P) and the
 *     lock-and-fetch polling strategy, run them. The end is when scheduled_tasks is empty
 *     (db-scheduler deletes a one-time task when it completes). seconds = end - the earliest
 *     handler start across instances. Also: total handler calls and the peak VmHWM of the
 *     instance JVMs.
 *  2. schedule-to-claim delay: one idle instance; S times, after a random sleep in [0, P) ms,
 *     the parent schedules one task due now and measures how long until the instance's
 *     handler starts for it.
 * The last stdout line is one JSON object; progress goes to stderr.
 */
package bench;

import com.github.kagkarlsson.scheduler.Scheduler;
import com.github.kagkarlsson.scheduler.SchedulerClient;
import com.github.kagkarlsson.scheduler.task.TaskInstance;
import com.github.kagkarlsson.scheduler.task.helper.OneTimeTask;
import com.github.kagkarlsson.scheduler.task.helper.Tasks;
import com.zaxxer.hikari.HikariConfig;
import com.zaxxer.hikari.HikariDataSource;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.Statement;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Consumer;

public final class DbSchedulerBench {
  static final String TASK_NAME = "bench-noop";
  static final String DELAY_PREFIX = "delay-";

  public static void main(String[] argv) {
    DbSchedulerBench bench = null;
    try {
      Map<String, String> args = parseArgs(argv);
      bench = new DbSchedulerBench(args);
      DbSchedulerBench b = bench;
      Runtime.getRuntime().addShutdownHook(new Thread(() -> {
        if (b.cleanup()) System.err.println("db-scheduler bench: stopped before the end; instances stopped, schema dropped");
      }));
      String json = bench.run();
      bench.cleanup();
      System.out.println(json);
      System.out.flush();
      System.exit(0);
    } catch (Throwable e) {
      if (bench != null) bench.cleanup();
      String msg = e.getMessage() == null ? e.toString() : e.getMessage();
      System.err.println("db-scheduler bench: error: " + msg.replace('\n', ' '));
      System.exit(1);
    }
  }

  // ---- configuration -------------------------------------------------------------------

  final String databaseUrl;
  final String schema;
  final int instances, tasks, concurrency, pollMs, delaySamples;
  final Db db;
  final List<Child> children = Collections.synchronizedList(new ArrayList<>());
  final AtomicBoolean cleanedUp = new AtomicBoolean();
  volatile boolean schemaCreated;
  HikariDataSource pool;

  DbSchedulerBench(Map<String, String> a) {
    databaseUrl = required(a, "database-url");
    schema = required(a, "schema");
    instances = positive(a, "instances", false);
    tasks = positive(a, "tasks", false);
    concurrency = positive(a, "concurrency", false);
    pollMs = positive(a, "poll-interval-ms", false);
    delaySamples = positive(a, "delay-samples", true);
    db = Db.parse(databaseUrl, schema);
  }

  // ---- the protocol --------------------------------------------------------------------

  String run() throws Exception {
    createSchema();
    pool = db.pool("bench-parent", 2);
    OneTimeTask<Void> task = task(id -> {});
    SchedulerClient client = SchedulerClient.Builder.create(pool, task).build();

    // 1. Throughput.
    log("scheduling %d tasks", tasks);
    final int chunk = 1000;
    Instant due = Instant.now();
    for (int from = 0; from < tasks; from += chunk) {
      List<TaskInstance<?>> batch = new ArrayList<>();
      for (int i = from; i < Math.min(tasks, from + chunk); i++) batch.add(task.instance("t-" + i));
      client.scheduleBatch(batch, due);
    }
    if (countRemaining() != tasks) throw new IllegalStateException("scheduled row count != " + tasks);

    log("starting %d instance(s), %d threads each, poll %d ms", instances, concurrency, pollMs);
    List<Child> workers = new ArrayList<>();
    for (int i = 0; i < instances; i++) workers.add(startChild("w" + i));

    long lastProgressAt = System.nanoTime();
    long stallLimitNs = TimeUnit.MILLISECONDS.toNanos(Math.max(60_000L, 5L * pollMs));
    long remaining = tasks, lastLogged = System.nanoTime();
    double endMs;
    while (true) {
      long now = countRemaining();
      if (now == 0) {
        endMs = nowMs();
        break;
      }
      if (now < remaining) {
        remaining = now;
        lastProgressAt = System.nanoTime();
      }
      for (Child c : workers) {
        if (!c.process.isAlive()) throw new IllegalStateException("instance " + c.name + " exited with code " + c.process.exitValue());
      }
      if (System.nanoTime() - lastProgressAt > stallLimitNs) {
        throw new IllegalStateException("no progress for " + TimeUnit.NANOSECONDS.toSeconds(stallLimitNs) + " s, " + now + " tasks left");
      }
      if (System.nanoTime() - lastLogged > 2_000_000_000L) {
        log("%d tasks left", now);
        lastLogged = System.nanoTime();
      }
      Thread.sleep(20);
    }

    long peakKb = 0;
    for (Child c : workers) peakKb = Math.max(peakKb, vmHwmKb(c.process.pid()));
    long handlerCalls = 0;
    double firstMs = Double.MAX_VALUE;
    for (Child c : workers) {
      stopChild(c);
      if (c.calls < 0) throw new IllegalStateException("instance " + c.name + " did not report its handler calls");
      handlerCalls += c.calls;
      if (!Double.isNaN(c.firstMs)) firstMs = Math.min(firstMs, c.firstMs);
    }
    if (firstMs == Double.MAX_VALUE) throw new IllegalStateException("no instance reported a handler start");
    double seconds = (endMs - firstMs) / 1000.0;
    log("throughput: %d tasks in %.3f s, %d handler calls", tasks, seconds, handlerCalls);

    // 2. Schedule-to-claim delay.
    String delayJson = "null";
    if (delaySamples > 0) {
      Child c = startChild("d0");
      if (!c.ready.await(60, TimeUnit.SECONDS)) throw new IllegalStateException("delay instance did not get ready in 60 s");
      double[] delays = new double[delaySamples];
      long waitMs = Math.max(30_000L, 5L * pollMs);
      for (int i = 0; i < delaySamples; i++) {
        Thread.sleep(ThreadLocalRandom.current().nextLong(pollMs));
        String id = DELAY_PREFIX + i;
        client.schedule(task.instance(id), Instant.now());
        double scheduledAt = nowMs();
        Double claimedAt = null;
        long deadline = System.currentTimeMillis() + waitMs;
        while (claimedAt == null) {
          long left = deadline - System.currentTimeMillis();
          if (left <= 0 || !c.process.isAlive()) throw new IllegalStateException("task " + id + " was not claimed within " + waitMs + " ms");
          String[] claim = c.claims.poll(Math.min(left, 200), TimeUnit.MILLISECONDS);
          if (claim != null && claim[0].equals(id)) claimedAt = Double.parseDouble(claim[1]);
        }
        delays[i] = claimedAt - scheduledAt;
        log("delay sample %d/%d: %.1f ms", i + 1, delaySamples, delays[i]);
      }
      stopChild(c);
      java.util.Arrays.sort(delays);
      int n = delays.length;
      double median = n % 2 == 1 ? delays[n / 2] : (delays[n / 2 - 1] + delays[n / 2]) / 2;
      double p99 = delays[Math.max(0, (int) Math.ceil(0.99 * n) - 1)]; // nearest rank
      delayJson = String.format(Locale.ROOT, "{\"samples\":%d,\"medianMs\":%.1f,\"p99Ms\":%.1f,\"maxMs\":%.1f}",
          n, median, p99, delays[n - 1]);
    }

    return String.format(Locale.ROOT,
        "{\"system\":\"db-scheduler\",\"version\":\"%s\",\"instances\":%d,\"tasks\":%d,\"concurrency\":%d,"
            + "\"pollIntervalMs\":%d,\"seconds\":%.3f,\"tasksPerSecond\":%d,\"handlerCalls\":%d,"
            + "\"peakRssMb\":%d,\"delay\":%s,\"notes\":\"%s\"}",
        version(), instances, tasks, concurrency, pollMs, seconds, Math.round(tasks / seconds), handlerCalls,
        Math.round(peakKb / 1024.0), delayJson,
        "lock-and-fetch polling (0.5, 1.0); one JVM per instance; HikariCP pool of threads+2 per instance; "
            + "scheduleBatch for the throughput tasks");
  }

  // ---- database ------------------------------------------------------------------------

  void createSchema() throws Exception {
    try (Connection c = db.adminConnection(); Statement st = c.createStatement()) {
      st.execute("DROP SCHEMA IF EXISTS " + schema + " CASCADE");
      st.execute("CREATE SCHEMA " + schema);
      schemaCreated = true;
      st.execute("SET search_path TO " + schema);
      for (String sql : ddlStatements()) st.execute(sql);
    }
  }

  static List<String> ddlStatements() throws IOException {
    try (InputStream in = DbSchedulerBench.class.getResourceAsStream("/postgresql_tables.sql")) {
      if (in == null) throw new IOException("resource postgresql_tables.sql missing from the jar");
      StringBuilder sb = new StringBuilder();
      for (String line : new String(in.readAllBytes(), StandardCharsets.UTF_8).split("\n")) {
        if (!line.trim().startsWith("--")) sb.append(line).append('\n');
      }
      List<String> out = new ArrayList<>();
      for (String s : sb.toString().split(";")) if (!s.isBlank()) out.add(s.trim());
      return out;
    }
  }

  long countRemaining() throws Exception {
    try (Connection c = pool.getConnection(); Statement st = c.createStatement();
         ResultSet rs = st.executeQuery("SELECT count(*) FROM scheduled_tasks")) {
      rs.next();
      return rs.getLong(1);
    }
  }

  /** Stops every instance, closes the pool, drops the schema; true if this call did it. */
  boolean cleanup() {
    if (!cleanedUp.compareAndSet(false, true)) return false;
    synchronized (children) {
      for (Child c : children) c.closeStdin();
      for (Child c : children) {
        try {
          if (!c.process.waitFor(15, TimeUnit.SECONDS)) c.process.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
          c.process.destroyForcibly();
        }
      }
    }
    if (pool != null) pool.close();
    if (schemaCreated) {
      try (Connection c = db.adminConnection(); Statement st = c.createStatement()) {
        st.execute("DROP SCHEMA IF EXISTS " + schema + " CASCADE");
      } catch (Exception e) {
        System.err.println("db-scheduler bench: could not drop schema " + schema + ": " + e.getMessage());
      }
    }
    return true;
  }

  // ---- instance processes ----------------------------------------------------------------

  /** One instance JVM; reads its stdout lines (ready / first / claimed / calls). */
  static final class Child {
    final String name;
    final Process process;
    final CountDownLatch ready = new CountDownLatch(1);
    final BlockingQueue<String[]> claims = new LinkedBlockingQueue<>();
    final Thread reader;
    volatile double firstMs = Double.NaN;
    volatile long calls = -1;

    Child(String name, Process process) {
      this.name = name;
      this.process = process;
      this.reader = new Thread(this::read, "reader-" + name);
      reader.setDaemon(true);
      reader.start();
    }

    private void read() {
      try (BufferedReader r = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
        for (String line; (line = r.readLine()) != null; ) {
          String[] f = line.trim().split(" ");
          switch (f[0]) {
            case "ready" -> ready.countDown();
            case "first" -> firstMs = Double.parseDouble(f[1]);
            case "claimed" -> claims.add(new String[] {f[1], f[2]});
            case "calls" -> calls = Long.parseLong(f[1]);
            default -> System.err.println("[" + name + "] " + line);
          }
        }
      } catch (IOException ignored) {
        // process ended
      }
    }

    void closeStdin() {
      try {
        process.getOutputStream().close();
      } catch (IOException ignored) {
        // already gone
      }
    }
  }

  Child startChild(String name) throws IOException {
    String java = ProcessHandle.current().info().command().orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    List<String> cmd = List.of(java, "-cp", System.getProperty("java.class.path"), Instance.class.getName(),
        "--database-url", databaseUrl, "--schema", schema, "--concurrency", String.valueOf(concurrency),
        "--poll-interval-ms", String.valueOf(pollMs), "--name", name);
    Process p = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT).start();
    Child c = new Child(name, p);
    children.add(c);
    return c;
  }

  /** Asks the instance to stop (stdin EOF), waits for it and for its last output line. */
  void stopChild(Child c) throws InterruptedException {
    c.closeStdin();
    if (!c.process.waitFor(30, TimeUnit.SECONDS)) {
      c.process.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
      throw new IllegalStateException("instance " + c.name + " did not stop within 30 s");
    }
    c.reader.join(5000);
    if (c.process.exitValue() != 0) throw new IllegalStateException("instance " + c.name + " exited with code " + c.process.exitValue());
  }

  static long vmHwmKb(long pid) throws IOException {
    for (String line : Files.readAllLines(Path.of("/proc", String.valueOf(pid), "status"))) {
      if (line.startsWith("VmHWM:")) return Long.parseLong(line.replaceAll("[^0-9]", ""));
    }
    throw new IOException("no VmHWM for pid " + pid);
  }

  // ---- shared helpers (also used by Instance) ------------------------------------------

  /** The benchmark's one-time task; the handler gets the task instance id. */
  static OneTimeTask<Void> task(Consumer<String> handler) {
    return Tasks.oneTime(TASK_NAME).execute((instance, ctx) -> handler.accept(instance.getId()));
  }

  /** Wall-clock epoch milliseconds with sub-millisecond precision. */
  static double nowMs() {
    Instant t = Instant.now();
    return t.getEpochSecond() * 1000.0 + t.getNano() / 1e6;
  }

  static String version() {
    try (InputStream in = Scheduler.class.getResourceAsStream("/META-INF/maven/com.github.kagkarlsson/db-scheduler/pom.properties")) {
      Properties p = new Properties();
      if (in != null) p.load(in);
      return p.getProperty("version", "unknown");
    } catch (IOException e) {
      return "unknown";
    }
  }

  static void log(String fmt, Object... args) {
    System.err.println("[db-scheduler] " + String.format(Locale.ROOT, fmt, args));
  }

  static Map<String, String> parseArgs(String[] argv) {
    Map<String, String> m = new HashMap<>();
    for (int i = 0; i < argv.length; i++) {
      String a = argv[i];
      if (!a.startsWith("--")) throw new IllegalArgumentException("unexpected argument: " + a);
      int eq = a.indexOf('=');
      if (eq > 0) m.put(a.substring(2, eq), a.substring(eq + 1));
      else if (i + 1 < argv.length) m.put(a.substring(2), argv[++i]);
      else throw new IllegalArgumentException("missing value for " + a);
    }
    return m;
  }

  static String required(Map<String, String> a, String key) {
    String v = a.get(key);
    if (v == null || v.isEmpty()) throw new IllegalArgumentException("--" + key + " is required");
    return v;
  }

  static int positive(Map<String, String> a, String key, boolean zeroOk) {
    int v;
    try {
      v = Integer.parseInt(required(a, key));
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException("--" + key + " must be an integer");
    }
    if (v < (zeroOk ? 0 : 1)) throw new IllegalArgumentException("--" + key + " must be " + (zeroOk ? ">= 0" : "> 0"));
    return v;
  }

  /** A libpq-style URL (postgres://user[:password]@host[:port]/db[?params]) turned into JDBC. */
  record Db(String jdbcBase, String query, String user, String password, String schema) {
    static Db parse(String url, String schema) {
      if (!schema.matches("[a-z_][a-z0-9_]*")) throw new IllegalArgumentException("--schema must match [a-z_][a-z0-9_]*");
      URI u = URI.create(url);
      if (!"postgres".equals(u.getScheme()) && !"postgresql".equals(u.getScheme())) {
        throw new IllegalArgumentException("--database-url must start with postgres:// or postgresql://");
      }
      String host = u.getHost() == null ? "localhost" : u.getHost();
      int port = u.getPort() < 0 ? 5432 : u.getPort();
      String user = "postgres", password = System.getenv("PGPASSWORD");
      if (u.getUserInfo() != null) {
        String[] ui = u.getUserInfo().split(":", 2);
        user = ui[0];
        if (ui.length == 2) password = ui[1];
      }
      String path = u.getPath() == null ? "" : u.getPath().replaceFirst("^/", "");
      String dbName = path.isEmpty() ? user : path;
      return new Db("jdbc:postgresql://" + host + ":" + port + "/" + dbName, u.getRawQuery(), user, password, schema);
    }

    String jdbcUrl(boolean withSchema) {
      StringBuilder sb = new StringBuilder(jdbcBase).append("?ApplicationName=db-scheduler-bench");
      if (withSchema) sb.append("&currentSchema=").append(schema);
      if (query != null && !query.isEmpty()) sb.append('&').append(query);
      return sb.toString();
    }

    Connection adminConnection() throws Exception {
      Properties p = new Properties();
      p.setProperty("user", user);
      if (password != null) p.setProperty("password", password);
      return DriverManager.getConnection(jdbcUrl(false), p);
    }

    HikariDataSource pool(String name, int size) {
      HikariConfig cfg = new HikariConfig();
      cfg.setPoolName(name);
      cfg.setJdbcUrl(jdbcUrl(true));
      cfg.setUsername(user);
      if (password != null) cfg.setPassword(password);
      cfg.setMaximumPoolSize(size);
      return new HikariDataSource(cfg);
    }
  }
}
