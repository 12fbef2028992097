-- claim-due-tasks: lock-and-fetch up to $2 tasks for this instance, in one statement.
--   $1 picked_by        text    the claiming instance
--   $2 limit            integer free worker slots
--   $3 dead_after_ms    integer a picked task whose heartbeat is older is dead and claimable
-- A task is claimable when it is due and not picked, or picked but its heartbeat went stale
-- (its instance died). Every claim bumps `version`: the new version is the fencing token
-- that every later write of the claimer is conditional on. Times come from the database.
WITH due AS (
  SELECT t.task_name, t.task_instance
  FROM scheduled_tasks t
  WHERE (NOT t.picked AND t.execution_time <= now())
     OR (t.picked AND t.last_heartbeat < now() - make_interval(secs => $3::integer / 1000.0))
  ORDER BY t.priority DESC, t.execution_time
  LIMIT $2
  FOR UPDATE SKIP LOCKED
)
UPDATE scheduled_tasks t
SET picked = true, picked_by = $1, last_heartbeat = now(), version = t.version + 1
FROM due
WHERE t.task_name = due.task_name AND t.task_instance = due.task_instance
RETURNING t.task_name, t.task_instance, t.task_data, t.version, t.consecutive_failures,
          t.execution_time, now() - t.execution_time AS claim_delay
