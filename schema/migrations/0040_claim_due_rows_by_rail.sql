-- 0040_claim_due_rows_by_rail.sql
-- A claim reads the due rows of the rails it takes from, and no other rail's.
--
-- Until now the claim walked every rail's due rows together in due order (ix_pending_due)
-- and dropped, one by one, those it could not take: a paused rail's, a rail claimed on its own
-- under its controls (0024), a rail this worker does not serve. Its cost grew with the
-- backlog held back on any other rail (0039 gives the figures). Now, through
-- ix_pending_due_by_rail (0039):
--   * outbox_lock_due(rails, paused participants, limit) takes the first `limit` due,
--     unleased rows of the given rails in due order and locks them FOR UPDATE SKIP LOCKED.
--     One rail: one index scan in due order, exactly the old scan without the other rails.
--     Several: each rail's first `limit` due rows, merged in due order, decide how many of
--     the claim each rail gives (at most `limit` index entries read per rail); then each
--     rail's share is locked in due order, skipping rows another claimer holds as before.
--     Without a concurrent claimer this is the same set the single walk returned: the first
--     `limit` claimable rows in due order.
--   * claim_outbox_batch uses it for the rails without settings and for a rail with a rate
--     limit or a breaker (an ordered rail keeps 0038's heads, whose window now reads the
--     rail's own index as well). Validation, pauses, controls, leases, the returned rows and
--     enable_sort = off (0037) are unchanged.
--   * outbox_next_attempt_at() finds each rail with unleased rows by a loose scan of the same
--     index (one probe per rail) and takes the earliest next_attempt_at of each, instead of
--     min() over ix_pending_due; same result.
-- A paused participant's rows are still dropped one by one within its rail (not addressed
-- here).

CREATE FUNCTION public.outbox_lock_due(
  p_rail_types          text[],
  p_paused_participants text[],
  p_limit               int
)
RETURNS uuid[]
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  v_rails text[] := p_rail_types;
  v_takes int[] := ARRAY[p_limit];
  v_ids   uuid[] := '{}';
  v_some  uuid[];
  -- Without paused participants the merge reads nothing but the index's own columns.
  v_none_paused boolean := cardinality(p_paused_participants) = 0;
BEGIN
  IF cardinality(p_rail_types) > 1 THEN
    -- How many of the claim each rail gives: each rail's first p_limit due rows (its own
    -- index, in due order), merged in due order, the first p_limit of them counted per rail.
    SELECT COALESCE(array_agg(m.rail_type), '{}'), COALESCE(array_agg(m.take), '{}')
      INTO v_rails, v_takes
      FROM (
        SELECT q.rail_type, count(*)::int AS take
          FROM (
            SELECT x.rail_type
              FROM (SELECT DISTINCT r.rail FROM unnest(p_rail_types) AS r(rail)) s
             CROSS JOIN LATERAL (
               SELECT e.rail_type, e.next_attempt_at, e.created_at
                 FROM public.payment_outbox_pending e
                WHERE e.claimed_by IS NULL
                  AND e.next_attempt_at <= now()
                  AND e.rail_type = s.rail
                  AND (v_none_paused OR e.participant_id <> ALL (p_paused_participants))
                ORDER BY e.next_attempt_at, e.created_at
                LIMIT p_limit
             ) x
             ORDER BY x.next_attempt_at, x.created_at
             LIMIT p_limit
          ) q
         GROUP BY q.rail_type
      ) m;
  END IF;

  -- Each rail's share, locked in due order; a row another claimer holds is skipped and the
  -- scan goes on to the next, as the single walk did.
  FOR i IN 1 .. cardinality(v_rails) LOOP
    SELECT COALESCE(array_agg(c.outbox_id), '{}') INTO v_some
      FROM (
        SELECT d.outbox_id
          FROM public.payment_outbox_pending d
         WHERE d.claimed_by IS NULL
           AND d.next_attempt_at <= now()
           AND d.rail_type = v_rails[i]
           AND d.participant_id <> ALL (p_paused_participants)
         ORDER BY d.next_attempt_at, d.created_at
         LIMIT v_takes[i]
         FOR UPDATE SKIP LOCKED
      ) c;
    v_ids := v_ids || v_some;
  END LOOP;
  RETURN v_ids;
END;
$$;

REVOKE ALL ON FUNCTION public.outbox_lock_due(text[], text[], int) FROM PUBLIC;

CREATE OR REPLACE FUNCTION public.outbox_next_attempt_at()
RETURNS timestamptz
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET enable_sort = off
AS $$
  -- The rails with unleased rows, one index probe each (a loose scan), then each rail's
  -- earliest. Sorting is off so a queue without statistics cannot turn either step into a
  -- read of every row (as 0037 for the claim).
  WITH RECURSIVE rails AS (
    (SELECT p.rail_type
       FROM public.payment_outbox_pending p
      WHERE p.claimed_by IS NULL
      ORDER BY p.rail_type
      LIMIT 1)
    UNION ALL
    SELECT n.rail_type
      FROM rails r
     CROSS JOIN LATERAL (
       SELECT p.rail_type
         FROM public.payment_outbox_pending p
        WHERE p.claimed_by IS NULL
          AND p.rail_type > r.rail_type
        ORDER BY p.rail_type
        LIMIT 1
     ) n
  )
  SELECT min(f.next_attempt_at)
    FROM rails r
   CROSS JOIN LATERAL (
     SELECT p.next_attempt_at
       FROM public.payment_outbox_pending p
      WHERE p.claimed_by IS NULL
        AND p.rail_type = r.rail_type
      ORDER BY p.next_attempt_at
      LIMIT 1
   ) f;
$$;

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
        v_ids := public.outbox_lock_due(ARRAY[v_set.rail_type], v_paused_participants, v_allowed);
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
  -- Each served rail's due rows are read on their own (0040): never another rail's.
  v_ids := public.outbox_lock_due(v_rail_types, v_paused_participants, v_remaining);
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
