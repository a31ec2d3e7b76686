-- 0038_ordered_claim_by_participant_heads.sql
-- An ordered rail's claim took time in proportion to the whole due queue of the rail, on
-- every claim, whenever fewer heads were free than the claim asked for.
--
-- 0024 walked the rail's due rows in due order and kept a row when no other row of its
-- participant on the rail had a lower sequence or a lease. Only a participant's head can
-- pass, so with P participants a claim finds at most P rows, and when P is below the claim's
-- size (or the heads are leased, which is the steady state of an ordered drain: one item in
-- flight per participant) it walked every due row. Each head's check also read all of its
-- participant's rows, because "or leased" kept the participant's index from stopping early.
-- Measured: 20,000 due rows of 16 participants, claims of 256: 145-200 ms per claim, 16 items
-- each; the time grows with the queue.
--
-- Now (outbox_lock_ordered_heads):
--   1. A window of the first 2 x limit (at least 64) due, unleased rows in due order; the
--      heads among them: no lower sequence of the participant on the rail (the participant
--      index, stopping at the first), no leased row of the participant on the rail (the
--      rail's leased participants read once from the lease index into a hash, NOT IN on a
--      NOT NULL column; a lease sets claimed_by and lease_expires_at together,
--      INV-PENDING-LEASE-ALL-OR-NOTHING), no block, not paused.
--   2. If the window held every due row, or enough heads, they are the answer: the first
--      `limit` eligible rows in due order are the same rows the 0024 walk returned.
--   3. Otherwise each participant's head on the rail is found directly, one index probe per
--      participant (a loose scan of ux_pending_participant_sequence), and the eligible ones
--      are taken in due order.
-- Work per claim: the window plus one probe per participant with items on the rail, instead
-- of every due row. The rows are then locked FOR UPDATE SKIP LOCKED and re-checked (still
-- unleased and due) exactly as before; a head another claimer took meanwhile is skipped.
--
-- claim_outbox_batch is otherwise as in 0036, and keeps 0037's enable_sort = off (now in its
-- definition).

CREATE FUNCTION public.outbox_lock_ordered_heads(
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

REVOKE ALL ON FUNCTION public.outbox_lock_ordered_heads(text, text[], int) FROM PUBLIC;

CREATE OR REPLACE FUNCTION public.claim_outbox_batch(
  p_batch_size    int,
  p_worker_id     text,
  p_lease_seconds int,
  p_rail_types    text[]
)
RETURNS TABLE (
  outbox_id        uuid,
  instruction_id   text,
  participant_id   text,
  sequence_id      bigint,
  idempotency_key  text,
  rail_type        text,
  payload          jsonb,
  attempt_count    int,
  lease_token      uuid,
  lease_expires_at timestamptz,
  created_at       timestamptz,
  traceparent      text
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET enable_sort = off
AS $$
#variable_conflict use_column
DECLARE
  v_max_lease           int := (SELECT l.max_lease_seconds FROM public.outbox_limits l);
  v_rail_types          text[] := p_rail_types;
  v_paused_participants text[] := '{}';
  v_remaining           int := p_batch_size;
  v_set                 public.outbox_rail_settings;
  v_state               public.outbox_rail_state;
  v_allowed             int;
  v_tokens              double precision;
  v_probe               boolean;
  v_ids                 uuid[];
  -- One fresh token per call, shared by the items it leases: every fence pairs the token
  -- with the item's id, worker and expiry, so the pair is as unique as a token per item,
  -- and a uuidv7() per item (a getpid() and a DRBG draw each) was 3 % of a drain's server CPU.
  v_lease_token         uuid := uuidv7();
BEGIN
  -- Bounded: at most 1000 items of at most max_payload_bytes each per claim.
  IF p_batch_size IS NULL OR p_batch_size < 1 OR p_batch_size > 1000 THEN
    RAISE EXCEPTION 'claim_outbox_batch: p_batch_size must be between 1 and 1000, got %', p_batch_size
      USING ERRCODE = '22023';
  END IF;
  IF p_lease_seconds IS NULL OR p_lease_seconds < 1 OR p_lease_seconds > v_max_lease THEN
    RAISE EXCEPTION 'claim_outbox_batch: p_lease_seconds must be between 1 and % (outbox_limits.max_lease_seconds), got %',
      v_max_lease, p_lease_seconds
      USING ERRCODE = '22023';
  END IF;
  IF p_worker_id IS NULL OR btrim(p_worker_id) = '' OR length(p_worker_id) > 128 THEN
    RAISE EXCEPTION 'claim_outbox_batch: p_worker_id must be a non-empty worker id of at most 128 characters'
      USING ERRCODE = '22023';
  END IF;
  IF p_rail_types IS NULL OR cardinality(p_rail_types) NOT BETWEEN 1 AND 1000 THEN
    RAISE EXCEPTION 'claim_outbox_batch: p_rail_types must list the 1 to 1000 rail types this worker serves'
      USING ERRCODE = '22023';
  END IF;

  -- The claim's commit does not wait for its WAL flush (transaction-local; the
  -- completions, separate transactions, stay synchronous). A claim lost in a server crash
  -- is a lease that never existed: the item is still due and is claimed again.
  PERFORM set_config('synchronous_commit', 'off', true);

  -- Kill switches, read once per call (the table is empty unless an operator paused).
  IF EXISTS (SELECT 1 FROM public.outbox_pauses) THEN
    IF EXISTS (SELECT 1 FROM public.outbox_pauses x WHERE x.scope = 'all') THEN
      RETURN;
    END IF;
    SELECT COALESCE(array_agg(r.rail), '{}') INTO v_rail_types
      FROM unnest(p_rail_types) AS r(rail)
     WHERE NOT EXISTS (SELECT 1 FROM public.outbox_pauses x WHERE x.scope = 'rail' AND x.target = r.rail);
    IF cardinality(v_rail_types) = 0 THEN
      RETURN;
    END IF;
    SELECT COALESCE(array_agg(x.target), '{}') INTO v_paused_participants
      FROM public.outbox_pauses x
     WHERE x.scope = 'participant';
  END IF;

  -- Rails with settings (rate limit, breaker, ordering), each claimed on its own under its
  -- own allowance; read once per call (the table is empty unless an operator configured a
  -- rail). The other rails are claimed together below, exactly as before.
  IF EXISTS (SELECT 1 FROM public.outbox_rail_settings) THEN
    FOR v_set IN
      SELECT s.*
        FROM public.outbox_rail_settings s
       WHERE s.rail_type = ANY (v_rail_types)
         AND (s.max_per_second IS NOT NULL OR s.ordered OR s.breaker_threshold IS NOT NULL)
       ORDER BY s.rail_type
    LOOP
      v_rail_types := array_remove(v_rail_types, v_set.rail_type);
      CONTINUE WHEN v_remaining = 0;
      v_allowed := v_remaining;
      v_probe := false;

      IF v_set.max_per_second IS NOT NULL OR v_set.breaker_threshold IS NOT NULL THEN
        SELECT st.* INTO v_state FROM public.outbox_rail_state st WHERE st.rail_type = v_set.rail_type;
        IF v_set.breaker_threshold IS NOT NULL AND v_state.breaker_state <> 'closed' THEN
          -- Open and cooling down: nobody claims (no lock taken, attempt counts stay put).
          CONTINUE WHEN v_state.breaker_state = 'open' AND v_state.open_until > now();
          -- Time for a probe: one claimer at a time decides, under the state row's lock.
          SELECT st.* INTO v_state FROM public.outbox_rail_state st
           WHERE st.rail_type = v_set.rail_type FOR UPDATE;
          CONTINUE WHEN v_state.breaker_state = 'open' AND v_state.open_until > now();
          CONTINUE WHEN v_state.breaker_state = 'half_open' AND EXISTS (
            SELECT 1 FROM public.payment_outbox_pending q
             WHERE q.outbox_id = v_state.probe_outbox_id
               AND q.claimed_by IS NOT NULL AND q.lease_expires_at > now());
          IF v_state.breaker_state <> 'closed' THEN
            v_allowed := 1;
            v_probe := true;
          END IF;
        END IF;
        IF v_set.max_per_second IS NOT NULL THEN
          -- Token bucket: refilled by the time elapsed (clock time: claimers queue on this
          -- lock, so the transaction start would run backwards), capacity one second's worth.
          SELECT st.* INTO v_state FROM public.outbox_rail_state st
           WHERE st.rail_type = v_set.rail_type FOR UPDATE;
          v_tokens := LEAST(v_set.max_per_second::double precision,
                            v_state.tokens + v_set.max_per_second
                              * GREATEST(0, extract(epoch FROM clock_timestamp() - v_state.refilled_at)));
          v_allowed := LEAST(v_allowed, floor(v_tokens)::int);
        END IF;
      END IF;

      v_ids := '{}';
      IF v_allowed > 0 AND v_set.ordered THEN
        -- Ordered: each participant's head on this rail (0038: found by participant, not by
        -- walking every due row).
        v_ids := public.outbox_lock_ordered_heads(v_set.rail_type, v_paused_participants, v_allowed);
      ELSIF v_allowed > 0 THEN
        SELECT COALESCE(array_agg(c.outbox_id), '{}') INTO v_ids
          FROM (
            SELECT d.outbox_id
              FROM public.payment_outbox_pending d
             WHERE d.claimed_by IS NULL
               AND d.next_attempt_at <= now()
               AND d.rail_type = v_set.rail_type
               AND d.participant_id <> ALL (v_paused_participants)
             ORDER BY d.next_attempt_at, d.created_at
             LIMIT v_allowed
             FOR UPDATE SKIP LOCKED
          ) c;
      END IF;

      IF v_set.max_per_second IS NOT NULL THEN
        UPDATE public.outbox_rail_state st
           SET tokens = v_tokens - cardinality(v_ids), refilled_at = clock_timestamp()
         WHERE st.rail_type = v_set.rail_type;
      END IF;
      IF v_probe AND cardinality(v_ids) > 0 THEN
        UPDATE public.outbox_rail_state st
           SET breaker_state = 'half_open', probe_outbox_id = v_ids[1]
         WHERE st.rail_type = v_set.rail_type;
      END IF;
      CONTINUE WHEN cardinality(v_ids) = 0;

      RETURN QUERY
      WITH leased AS (
        UPDATE public.payment_outbox_pending p
           SET claimed_by       = p_worker_id,
               lease_token      = v_lease_token,
               lease_expires_at = now() + make_interval(secs => p_lease_seconds),
               updated_at       = now()
         WHERE p.outbox_id = ANY (v_ids)
        RETURNING p.outbox_id, p.attempt_count, p.lease_token, p.lease_expires_at
      )
      SELECT l.outbox_id, i.instruction_id, i.participant_id, i.sequence_id, i.idempotency_key,
             i.rail_type, i.payload, l.attempt_count, l.lease_token, l.lease_expires_at, i.created_at,
             i.traceparent
        FROM leased l
        JOIN public.payment_outbox_items i ON i.outbox_id = l.outbox_id
       WHERE i.outbox_id = ANY (v_ids);
      v_remaining := v_remaining - cardinality(v_ids);
    END LOOP;
    IF cardinality(v_rail_types) = 0 OR v_remaining = 0 THEN
      RETURN;
    END IF;
  END IF;

  -- Ids first, then the lease by primary key: as a join (UPDATE ... FROM due) the planner
  -- switched to a sequential scan of the queue and a hash join once a claim was large
  -- relative to the table (256 of 20,000 rows); by id array it stays on the indexes.
  SELECT COALESCE(array_agg(c.outbox_id), '{}') INTO v_ids
    FROM (
      SELECT d.outbox_id
        FROM public.payment_outbox_pending d
       WHERE d.claimed_by IS NULL
         AND d.next_attempt_at <= now()
         AND d.rail_type = ANY (v_rail_types)
         AND d.participant_id <> ALL (v_paused_participants)
       ORDER BY d.next_attempt_at, d.created_at
       LIMIT v_remaining
       FOR UPDATE SKIP LOCKED
    ) c;
  IF cardinality(v_ids) = 0 THEN
    RETURN;
  END IF;

  RETURN QUERY
  WITH leased AS (
    UPDATE public.payment_outbox_pending p
       SET claimed_by       = p_worker_id,
           lease_token      = v_lease_token,
           lease_expires_at = now() + make_interval(secs => p_lease_seconds),
           updated_at       = now()
     WHERE p.outbox_id = ANY (v_ids)
    RETURNING p.outbox_id, p.attempt_count, p.lease_token, p.lease_expires_at
  )
  SELECT l.outbox_id, i.instruction_id, i.participant_id, i.sequence_id, i.idempotency_key,
         i.rail_type, i.payload, l.attempt_count, l.lease_token, l.lease_expires_at, i.created_at,
         i.traceparent
    FROM leased l
    JOIN public.payment_outbox_items i ON i.outbox_id = l.outbox_id
   WHERE i.outbox_id = ANY (v_ids);
END;
$$;
