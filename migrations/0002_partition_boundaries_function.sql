-- 0002_partition_boundaries_function: the partition boundaries of one product in a single pass
-- over the index, used by sql/partition-boundaries.sql.
-- Append-only: never edit a migration that has shipped; add a new file.
--
-- tranche_partition_boundaries(product_key, target_version, partition_size, max_partitions)
-- returns one row per partition, in (created_date, id) order:
--   seq, min_created_date, min_id, max_created_date, max_id, row_count
-- exactly the eligible rows (product_version < target_version) of the product, bounds
-- inclusive and taken from real rows, every partition but the last holding partition_size
-- rows; once max_partitions is reached the last one runs to the end.
--
-- How: ONE cursor over the index subscriptions (product_key, created_date, id) INCLUDE
-- (product_version), read once from the product's first eligible row to its last. Each
-- partition is FETCH (its first row), MOVE partition_size - 2, FETCH (its last row): MOVE
-- steps over index entries without returning them, and reports how many it stepped over, so
-- a short last partition is counted on the way. Ties on created_date are ordered by id, so the
-- cover is exact however many rows share a timestamp. Nothing is held in memory but the
-- current row. STABLE: the cursor and the final probe read one snapshot.
CREATE FUNCTION tranche_partition_boundaries(
  p_product_key text, p_target_version integer, p_partition_size integer, p_max_partitions integer)
RETURNS TABLE (seq integer, min_created_date timestamptz, min_id bigint,
               max_created_date timestamptz, max_id bigint, row_count bigint)
LANGUAGE plpgsql STABLE STRICT
AS $fn$
DECLARE
  rows_cursor refcursor;
  moved bigint;
  capped boolean;
BEGIN
  IF p_partition_size < 1 OR p_max_partitions < 1 THEN
    RAISE EXCEPTION 'partition size and max partitions must be 1 or more (got %, %)', p_partition_size, p_max_partitions;
  END IF;
  OPEN rows_cursor NO SCROLL FOR
    SELECT s.created_date, s.id
    FROM subscriptions s
    WHERE s.product_key = p_product_key AND s.product_version < p_target_version
    ORDER BY s.created_date, s.id;
  seq := 0;
  FETCH rows_cursor INTO min_created_date, min_id;
  WHILE FOUND LOOP
    seq := seq + 1;
    capped := seq >= p_max_partitions;
    moved := 0;
    IF capped THEN
      MOVE FORWARD ALL FROM rows_cursor;
      GET DIAGNOSTICS moved = ROW_COUNT;
    ELSIF p_partition_size = 1 THEN
      max_created_date := min_created_date;
      max_id := min_id;
      row_count := 1;
      RETURN NEXT;
      FETCH rows_cursor INTO min_created_date, min_id;
      CONTINUE;
    ELSE
      IF p_partition_size > 2 THEN
        MOVE FORWARD p_partition_size - 2 FROM rows_cursor;
        GET DIAGNOSTICS moved = ROW_COUNT;
      END IF;
      FETCH rows_cursor INTO max_created_date, max_id;
      IF FOUND THEN
        row_count := p_partition_size;
        RETURN NEXT;
        FETCH rows_cursor INTO min_created_date, min_id;
        CONTINUE;
      END IF;
    END IF;
    -- The last partition: it ends at the product's last eligible row.
    SELECT s.created_date, s.id INTO max_created_date, max_id
    FROM subscriptions s
    WHERE s.product_key = p_product_key AND s.product_version < p_target_version
    ORDER BY s.created_date DESC, s.id DESC
    LIMIT 1;
    row_count := 1 + moved;
    RETURN NEXT;
    EXIT;
  END LOOP;
  CLOSE rows_cursor;
END
$fn$;
