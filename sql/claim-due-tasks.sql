-- claim-due-tasks: lock-and-fetch up to $2 tasks for this instance, in one statement.
--   $1 picked_by        text    the claiming instance
--   $2 limit            integer free worker slots
--   $3 dead_after_ms    integer a picked task whose heartbeat is older is dead and claimable
-- A task is claimable when it is due and not picked, or picked but its heartbeat went stale
-- (its instance died); dead tasks go first. Each kind is read in the order of its own partial
-- index (scheduled_tasks_due, scheduled_tasks_heartbeat), so a claim reads about $2 rows
-- whatever the backlog; one condition with OR would sort every due task on each claim.
-- Every claim bumps `version`: the new version is the fencing token that every later write
-- of the claimer is conditional on. Times come from the database.
WITH dead AS (
  SELECT t.task_name, t.task_instance
  FROM scheduled_tasks t
  WHERE t.picked AND t.last_heartbeat < now() - make_interval(secs => $3::integer / 1000.0)
  ORDER BY t.last_heartbeat
  LIMIT $2
  FOR UPDATE SKIP LOCKED
), due AS (
  SELECT t.task_name, t.task_instance
  FROM scheduled_tasks t
  WHERE NOT t.picked AND t.execution_time <= now()
  ORDER BY t.priority DESC, t.execution_time
  LIMIT $2
  FOR UPDATE SKIP LOCKED
), chosen AS (
  SELECT task_name, task_instance FROM dead
  UNION ALL
  SELECT task_name, task_instance FROM due
  LIMIT $2
)
UPDATE scheduled_tasks t
SET picked = true, picked_by = $1, last_heartbeat = now(), version = t.version + 1
FROM chosen
WHERE t.task_name = chosen.task_name AND t.task_instance = chosen.task_instance
RETURNING t.task_name, t.task_instance, t.task_data, t.version, t.consecutive_failures,
          t.execution_time, now() - t.execution_time AS claim_delay
