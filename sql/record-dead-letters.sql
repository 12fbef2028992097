-- record-dead-letters: remember records sent to the dead-letter topic, once per source offset.
--   $1 source_topic      text
--   $2 source_partition  integer
--   $3 run_ids           bigint[]   the run each record claims (NULL when unknown)
--   $4 partition_ids     bigint[]   the partition each record claims (NULL when unknown)
--   $5 source_offsets    bigint[]
--   $6 record_keys       text[]
--   $7 reasons           text[]
--   $8 payloads          text[]     the record as read (truncated by the caller)
-- A claimed run or partition is kept only when it exists (a partition only within its run):
-- a malformed record may name anything. A replayed batch inserts nothing new.
INSERT INTO dead_letters (run_id, partition_id, source_topic, source_partition, source_offset, record_key, reason, payload)
SELECT (SELECT r.id FROM migration_runs r WHERE r.id = t.run_id),
       (SELECT p.id FROM partitions p WHERE p.id = t.partition_id AND p.run_id = t.run_id),
       $1, $2, t.source_offset, t.record_key, t.reason, t.payload
FROM unnest($3::bigint[], $4::bigint[], $5::bigint[], $6::text[], $7::text[], $8::text[])
  AS t(run_id, partition_id, source_offset, record_key, reason, payload)
ON CONFLICT (source_topic, source_partition, source_offset) DO NOTHING
