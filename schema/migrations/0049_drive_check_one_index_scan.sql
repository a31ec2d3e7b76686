-- 0049_drive_check_one_index_scan.sql
-- The drive check on appended attempts (0032, 0036) reads the re-drives of all the appended
-- items in one index scan instead of one per item (issue 9).
--
-- Its subquery `x.outbox_id IN (SELECT a.outbox_id FROM appended_attempts a)` was planned as
-- a bitmap index scan of outbox_redrives for every appended attempt: 256 scans for a batch
-- of 256 outcomes, each with its own executor start, almost always on an empty table.
-- The ids now go to the index as one array (`= ANY (ARRAY(...))`), one scan that looks them
-- all up. Measured with pg_stat_statements on one connection recording 36 batches of 256
-- outcomes, three runs each way: the check took 0.69-0.72 ms per batch before, 0.09 after.
-- Same counts, so the same drives are accepted and the same are refused (P7503).
CREATE OR REPLACE FUNCTION public.outbox_attempts_check_drive()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  v_wrong record;
BEGIN
  -- One count per appended item, from one index scan of the re-drives of all those items:
  -- their ids as one array (an IN subquery was planned as one scan per attempt).
  SELECT n.outbox_id, n.drive, 1 + COALESCE(r.redrives, 0) AS expected
    INTO v_wrong
    FROM appended_attempts n
    LEFT JOIN (
      SELECT x.outbox_id, count(*) AS redrives
        FROM public.outbox_redrives x
       WHERE x.outbox_id = ANY (ARRAY(SELECT a.outbox_id FROM appended_attempts a))
       GROUP BY x.outbox_id
    ) r ON r.outbox_id = n.outbox_id
   WHERE n.drive IS DISTINCT FROM 1 + COALESCE(r.redrives, 0)
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'INV-ATTEMPTS-DRIVE-FROM-LEDGER: an attempt for outbox item % was written in drive %, but the item is in drive % (1 + its recorded re-drives)',
      v_wrong.outbox_id, v_wrong.drive, v_wrong.expected
      USING ERRCODE = 'P7503',
            HINT = 'Write the drive as 1 + the count of the item''s rows in outbox_redrives.';
  END IF;
  RETURN NULL;
END;
$$;

