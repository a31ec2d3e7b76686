-- 0030_outbox_claim_fast_commit.sql
-- claim_outbox_batch as in 0024 (same signature, fences, pauses, rail controls and results),
-- with two changes for throughput (issue 9):
--   * its commit does not wait for the WAL flush: set_config('synchronous_commit', 'off',
--     true) inside the function, so it holds until the end of the claim's transaction. A
--     claim is only a lease: if the server crashes before the claim's WAL reaches disk, the
--     lease never existed, the item is still due and is claimed again; at-least-once holds.
--     No worker can record an outcome against such a lease (a completion in a later
--     transaction waits for its own flush, and WAL is flushed in order, so a durable
--     completion implies its claim is durable too). Completions stay synchronous. A caller
--     that claims and completes in ONE transaction would make that completion asynchronous:
--     the relayer never does (each call is its own transaction).
--   * the due rows are selected into an id array and leased by primary key (the rail-by-rail
--     path already did so), and the item record is read by the same ids: the join form
--     (UPDATE ... FROM due) switched to a sequential scan and hash join when a claim was
--     large relative to the table (at 20,000 rows, a claim of 256). EXPLAIN proof in
--     test/db/claim.test.ts.

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
      IF v_allowed > 0 THEN
        SELECT COALESCE(array_agg(c.outbox_id), '{}') INTO v_ids
          FROM (
            SELECT d.outbox_id
              FROM public.payment_outbox_pending d
             WHERE d.claimed_by IS NULL
               AND d.next_attempt_at <= now()
               AND d.rail_type = v_set.rail_type
               AND d.participant_id <> ALL (v_paused_participants)
               -- Ordered: only a participant's lowest queued sequence on this rail, none while
               -- one of its items is leased, none while a failed head waits for a re-drive.
               AND (NOT v_set.ordered OR (
                     NOT EXISTS (
                       SELECT 1 FROM public.payment_outbox_pending e
                        WHERE e.participant_id = d.participant_id
                          AND e.rail_type = v_set.rail_type
                          AND e.outbox_id <> d.outbox_id
                          AND (e.sequence_id < d.sequence_id OR e.claimed_by IS NOT NULL))
                     AND NOT EXISTS (
                       SELECT 1 FROM public.outbox_ordered_blocks b
                        WHERE b.rail_type = v_set.rail_type AND b.participant_id = d.participant_id)))
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
               lease_token      = uuidv7(),
               lease_expires_at = now() + make_interval(secs => p_lease_seconds)
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
           lease_token      = uuidv7(),
           lease_expires_at = now() + make_interval(secs => p_lease_seconds)
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
