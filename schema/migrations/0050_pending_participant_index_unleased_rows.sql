-- symphony:no-transaction
-- 0050_pending_participant_index_unleased_rows.sql
-- A claim no longer writes an entry into the queue's participant index (issue 9).
--
-- Leasing a queued row changes claimed_by and lease_expires_at, columns of the partial
-- indexes ix_pending_due_by_rail and ix_pending_lease_expiry, so PostgreSQL cannot update the
-- row in place (HOT): the new version gets an entry in every index of the queue, each checked
-- for uniqueness where the index is unique. The unique constraint on (participant_id,
-- sequence_id) was one of them, for no reader: the sequence is unique per participant in
-- the item record (ux_items_participant_sequence, 0020), which every queued row belongs to,
-- and the only reader of the queue's copy is an ordered rail's claim (0038), which never
-- needs a leased row from it: a participant with any leased row on the rail is passed over
-- whatever its sequence (the lease index, read once per claim).
--
-- So the index now holds unleased rows only (WHERE claimed_by IS NULL; a lease sets
-- claimed_by and lease_expires_at together, INV-PENDING-LEASE-ALL-OR-NOTHING), and the
-- ordered claim's two reads of it say so: "no lower sequence of the participant on the rail"
-- among unleased rows, and the participant's lowest unleased row as its head. Together with
-- the unchanged "no leased row of the participant on the rail" they pass exactly the rows
-- they passed before: a lower row that is leased holds its participant back through the
-- lease check, and a participant with no leased row has its lowest row unleased. A claim's
-- update leaves the index alone; a completion's reschedule (lease cleared) and the repair
-- of an expired lease put the row back, a terminal outcome deletes it.
--
-- Measured with pg_stat_statements on one connection claiming 256 and completing them, 20,000
-- queued, three alternations: the lease statement 13.4-13.5 us per item with the constraint,
-- 7.8-7.9 with this index; the backend's CPU per item 50.3-51.0 us against 44.8-45.2; that
-- loop's drain 15,368-15,781 items/s against 16,946-17,481.
--
-- Live queue: the new index is built CONCURRENTLY (enqueues and claims go on; the runner
-- drops an INVALID leftover of an interrupted build before retrying), the ordered claim is
-- replaced, and only then is the old constraint dropped (a brief ACCESS EXCLUSIVE lock).
-- Each step can be run again.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ux_pending_participant_sequence_unleased
  ON public.payment_outbox_pending (participant_id, sequence_id)
  WHERE claimed_by IS NULL;

CREATE OR REPLACE FUNCTION public.outbox_lock_ordered_heads(
  p_rail_type           text,
  p_paused_participants text[],
  p_limit               int
)
RETURNS uuid[]
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  v_window int := GREATEST(2 * p_limit, 64);
  v_seen   int;
  v_heads  uuid[];
  v_ids    uuid[];
BEGIN
  -- 1. The window, and the heads in it. MATERIALIZED: the window is taken first, in due
  --    order by the due index, and only its rows are checked.
  WITH windowed AS MATERIALIZED (
    SELECT d.outbox_id, d.participant_id, d.sequence_id, d.next_attempt_at, d.created_at
      FROM public.payment_outbox_pending d
     WHERE d.claimed_by IS NULL
       AND d.next_attempt_at <= now()
       AND d.rail_type = p_rail_type
     ORDER BY d.next_attempt_at, d.created_at
     LIMIT v_window
  )
  SELECT (SELECT count(*) FROM windowed)::int,
         COALESCE(array_agg(w.outbox_id ORDER BY w.next_attempt_at, w.created_at), '{}')
    INTO v_seen, v_heads
    FROM windowed w
   WHERE w.participant_id <> ALL (p_paused_participants)
     AND NOT EXISTS (
       SELECT 1 FROM public.payment_outbox_pending e
        WHERE e.participant_id = w.participant_id
          AND e.claimed_by IS NULL
          AND e.sequence_id < w.sequence_id
          AND e.rail_type = p_rail_type)
     AND w.participant_id NOT IN (
       SELECT e.participant_id FROM public.payment_outbox_pending e
        WHERE e.lease_expires_at IS NOT NULL AND e.rail_type = p_rail_type)
     AND NOT EXISTS (
       SELECT 1 FROM public.outbox_ordered_blocks b
        WHERE b.rail_type = p_rail_type AND b.participant_id = w.participant_id);

  -- 3. The window ended before the due rows did, and held too few heads: find every
  --    participant's head on the rail directly.
  IF v_seen = v_window AND cardinality(v_heads) < p_limit THEN
    -- The head rows themselves come out of the recursion (no join back to the queue: with
    -- sorting disabled the planner would rather walk the due index to feed the ordered
    -- aggregate, which is the whole-queue walk this replaces).
    WITH RECURSIVE heads AS (
      (SELECT h.outbox_id, h.participant_id, h.sequence_id, h.next_attempt_at, h.created_at,
              h.claimed_by
         FROM public.payment_outbox_pending h
        WHERE h.rail_type = p_rail_type
          AND h.claimed_by IS NULL
        ORDER BY h.participant_id, h.sequence_id
        LIMIT 1)
      UNION ALL
      SELECT n.outbox_id, n.participant_id, n.sequence_id, n.next_attempt_at, n.created_at,
             n.claimed_by
        FROM heads prev
       CROSS JOIN LATERAL (
         SELECT h.outbox_id, h.participant_id, h.sequence_id, h.next_attempt_at, h.created_at,
                h.claimed_by
           FROM public.payment_outbox_pending h
          WHERE h.rail_type = p_rail_type
            AND h.claimed_by IS NULL
            AND h.participant_id > prev.participant_id
          ORDER BY h.participant_id, h.sequence_id
          LIMIT 1
       ) n
    )
    SELECT COALESCE(array_agg(h.outbox_id ORDER BY h.next_attempt_at, h.created_at), '{}')
      INTO v_heads
      FROM heads h
     WHERE h.claimed_by IS NULL
       AND h.next_attempt_at <= now()
       AND h.participant_id <> ALL (p_paused_participants)
       AND h.participant_id NOT IN (
         SELECT e.participant_id FROM public.payment_outbox_pending e
          WHERE e.lease_expires_at IS NOT NULL AND e.rail_type = p_rail_type)
       AND NOT EXISTS (
         SELECT 1 FROM public.outbox_ordered_blocks b
          WHERE b.rail_type = p_rail_type AND b.participant_id = h.participant_id);
  END IF;

  -- 2./3. The first `p_limit` of them, locked; a row leased or rescheduled meanwhile is
  --    re-checked on its new version and dropped, one locked by another claimer skipped.
  SELECT COALESCE(array_agg(c.outbox_id), '{}') INTO v_ids
    FROM (
      SELECT d.outbox_id
        FROM unnest(v_heads[1:p_limit]) AS h(outbox_id)
        JOIN public.payment_outbox_pending d ON d.outbox_id = h.outbox_id
       WHERE d.claimed_by IS NULL
         AND d.next_attempt_at <= now()
         FOR UPDATE OF d SKIP LOCKED
    ) c;
  RETURN v_ids;
END;
$$;

ALTER TABLE public.payment_outbox_pending DROP CONSTRAINT IF EXISTS ux_pending_participant_sequence;
