/*
 * One db-scheduler instance for DbSchedulerBench, run as its own JVM.
 *
 * It starts a Scheduler (threads(C), pollingInterval(P), lock-and-fetch polling) whose one-time
 * task handler only notes when it was called, and reports on stdout:
 *   ready                     once the scheduler is started
 *   first <epochMs>           at the first handler start
 *   claimed <id> <epochMs>    at the handler start of each delay-phase task ("delay-*")
 *   calls <n>                 the number of handler calls, after stopping
 * It stops when its stdin closes (the parent closes it, or the parent died).
 */
package bench;

import com.github.kagkarlsson.scheduler.Scheduler;
import com.github.kagkarlsson.scheduler.SchedulerName;
import com.github.kagkarlsson.scheduler.task.helper.OneTimeTask;
import com.zaxxer.hikari.HikariDataSource;

import java.io.PrintStream;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

public final class Instance {
  public static void main(String[] argv) {
    try {
      Map<String, String> a = DbSchedulerBench.parseArgs(argv);
      String schema = DbSchedulerBench.required(a, "schema");
      int threads = DbSchedulerBench.positive(a, "concurrency", false);
      int pollMs = DbSchedulerBench.positive(a, "poll-interval-ms", false);
      String name = DbSchedulerBench.required(a, "name");
      DbSchedulerBench.Db db = DbSchedulerBench.Db.parse(DbSchedulerBench.required(a, "database-url"), schema);

      PrintStream out = System.out; // println is synchronized and flushes
      AtomicLong calls = new AtomicLong();
      AtomicBoolean started = new AtomicBoolean();
      OneTimeTask<Void> task = DbSchedulerBench.task(id -> {
        double t = DbSchedulerBench.nowMs();
        calls.incrementAndGet();
        if (started.compareAndSet(false, true)) out.println("first " + t);
        if (id.startsWith(DbSchedulerBench.DELAY_PREFIX)) out.println("claimed " + id + " " + t);
      });

      // One connection per executor thread, plus the poller and the housekeeper.
      HikariDataSource pool = db.pool("bench-" + name, threads + 2);
      Scheduler scheduler = Scheduler.create(pool, task)
          .schedulerName(new SchedulerName.Fixed("bench-" + name + "-" + ProcessHandle.current().pid()))
          .threads(threads)
          .pollingInterval(Duration.ofMillis(pollMs))
          .pollUsingLockAndFetch(0.5, 1.0)
          .shutdownMaxWait(Duration.ofSeconds(10))
          .registerShutdownHook()
          .build();
      scheduler.start();
      out.println("ready");

      while (System.in.read() != -1) {
        // wait for EOF
      }
      scheduler.stop();
      out.println("calls " + calls.get());
      out.flush();
      pool.close();
      System.exit(0);
    } catch (Throwable e) {
      System.err.println("db-scheduler bench instance: error: " + e);
      System.exit(1);
    }
  }
}
