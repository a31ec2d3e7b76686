-- 0032_outbox_hot_path.sql
-- The per-item cost of a claim and a completion, measured with pg_stat_statements
-- (track = all) and EXPLAIN ANALYZE on 256-item batches (issue 9), cut without changing what
-- either function returns, fences or records:
--
--   * The drive of an attempt was set by a BEFORE INSERT row trigger (plpgsql, one executor
--     start per row): 256 attempts took 13-16 ms with it and 7-8 ms without. The writers
--     (single and batch completion, repair) now write the drive themselves, set-based, and an
--     AFTER INSERT statement trigger checks every appended row at once: an attempt whose
--     drive is not 1 + the item's recorded re-drives is refused (P7503), whoever writes it.
--     INV-ATTEMPTS-DRIVE-FROM-LEDGER was "corrected whatever the writer says"; it is now
--     "refused unless right": the ledger never rewrites what a writer said, it refuses it.
--   * updated_at on the queue was set by a BEFORE UPDATE row trigger on every claimed row
--     (plpgsql, about 25 % of the claim's UPDATE). The claim, completion and repair set it
--     themselves; the trigger stays for every other writer and now fires only when the new
--     row does not already carry the transaction time, so updated_at is now() after every
--     update, exactly as before.
--   * complete_outbox_batch re-joined its input to the queue after locking, and the
--     planner (one-row estimates for jsonb functions) chose a nested loop that compared every
--     input element with every locked row (65,280 comparisons for 256 items). The lock step
--     now returns the locked rows' ids, tokens and drive bases, and the recording step joins
--     the input to those arrays. The re-check was redundant: rows are locked FOR UPDATE, so a
--     row changed while we waited is re-evaluated against its new version before it is locked
--     and cannot change again before commit. The two input-validation passes are one.

-- ------------------------------------------------------------
-- Drive: written by the writers, checked per statement
-- ------------------------------------------------------------
DROP TRIGGER trg_attempts_set_drive ON public.payment_outbox_attempts;
DROP FUNCTION public.outbox_attempt_set_drive();

CREATE FUNCTION public.outbox_attempts_check_drive()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  v_wrong record;
BEGIN
  SELECT n.outbox_id, n.drive,
         1 + (SELECT count(*) FROM public.outbox_redrives r WHERE r.outbox_id = n.outbox_id) AS expected
    INTO v_wrong
    FROM appended_attempts n
   WHERE n.drive IS DISTINCT FROM
         1 + (SELECT count(*) FROM public.outbox_redrives r WHERE r.outbox_id = n.outbox_id)
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

REVOKE ALL ON FUNCTION public.outbox_attempts_check_drive() FROM PUBLIC;

CREATE TRIGGER trg_attempts_check_drive
AFTER INSERT ON public.payment_outbox_attempts
REFERENCING NEW TABLE AS appended_attempts
FOR EACH STATEMENT EXECUTE FUNCTION public.outbox_attempts_check_drive();

-- ------------------------------------------------------------
-- updated_at: touched by the trigger only when the writer did not set it to now()
-- ------------------------------------------------------------
DROP TRIGGER trg_pending_touch_updated_at ON public.payment_outbox_pending;
CREATE TRIGGER trg_pending_touch_updated_at
BEFORE UPDATE ON public.payment_outbox_pending
FOR EACH ROW
WHEN (NEW.updated_at IS DISTINCT FROM now())
EXECUTE FUNCTION public.outbox_touch_updated_at();

-- ------------------------------------------------------------
-- claim_outbox_batch: as in 0030, updated_at set by the lease itself
-- ------------------------------------------------------------
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
           lease_token      = uuidv7(),
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

-- ------------------------------------------------------------
-- complete_outbox_attempt: as in 0029, the drive written, updated_at set on reschedule
-- ------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.complete_outbox_attempt(
  p_outbox_id           uuid,
  p_lease_token         uuid,
  p_worker_id           text,
  p_state               public.outbox_attempt_state,
  p_rail_reference      text DEFAULT NULL,
  p_rail_code           text DEFAULT NULL,
  p_error_code          text DEFAULT NULL,
  p_error_message       text DEFAULT NULL,
  p_latency_ms          int DEFAULT NULL,
  p_retry_delay_seconds int DEFAULT 1
)
RETURNS TABLE (
  attempt_no int,
  state      public.outbox_attempt_state
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
  v_attempt_no int;
  v_base       int;
  v_queued     record;
  v_state      public.outbox_attempt_state;
  v_error_code text := p_error_code;
BEGIN
  IF p_state IS NULL OR p_state NOT IN ('DISPATCHED', 'FAILED', 'RETRYABLE') THEN
    RAISE EXCEPTION 'Invalid completion state %: only DISPATCHED, FAILED or RETRYABLE complete an attempt', p_state
      USING ERRCODE = 'P7003';
  END IF;
  PERFORM public.assert_retry_delay('complete_outbox_attempt', p_retry_delay_seconds);

  SELECT p.drive_attempt_base, p.rail_type, p.participant_id, p.sequence_id INTO v_queued
     FROM public.payment_outbox_pending p
    WHERE p.outbox_id = p_outbox_id
      AND p.claimed_by = p_worker_id
      AND p.lease_token = p_lease_token
      AND p.lease_expires_at > clock_timestamp()
      FOR UPDATE;

  IF NOT FOUND THEN
    RAISE EXCEPTION 'LEASE_LOST: outbox item % is not leased to worker % with that token (lease expired, repaired, reclaimed or completed)',
      p_outbox_id, left(p_worker_id, 128)
      USING ERRCODE = 'P7002',
            HINT = 'Another worker owns the item now; do not retry this completion.';
  END IF;

  SELECT COALESCE(MAX(a.attempt_no), 0) + 1
    INTO v_attempt_no
    FROM public.payment_outbox_attempts a
   WHERE a.outbox_id = p_outbox_id;

  v_state := p_state;
  v_base := v_queued.drive_attempt_base;
  IF p_state = 'RETRYABLE' AND v_attempt_no - v_base >= public.outbox_retry_ceiling() THEN
    v_state := 'FAILED';
    v_error_code := COALESCE(p_error_code, 'RETRY_CEILING');
  END IF;

  INSERT INTO public.payment_outbox_attempts (
    outbox_id, attempt_no, state, claimed_at, completed_at,
    rail_reference, rail_code, error_code, error_message, latency_ms, worker_id, drive
  )
  VALUES (
    p_outbox_id, v_attempt_no, v_state, now(),
    CASE WHEN v_state IN ('DISPATCHED', 'FAILED') THEN now() END,
    CASE WHEN length(p_rail_reference) <= 512 THEN p_rail_reference END,
    left(p_rail_code, 64), left(v_error_code, 64), left(p_error_message, 1000),
    p_latency_ms, p_worker_id, 1 + (SELECT count(*) FROM public.outbox_redrives r WHERE r.outbox_id = p_outbox_id)
  );

  IF v_state IN ('DISPATCHED', 'FAILED') THEN
    DELETE FROM public.payment_outbox_pending p
     WHERE p.outbox_id = p_outbox_id;
  ELSE
    UPDATE public.payment_outbox_pending p
       SET attempt_count    = GREATEST(p.attempt_count, v_attempt_no),
           next_attempt_at  = now() + make_interval(secs => GREATEST(1, COALESCE(p_retry_delay_seconds, 1))),
           claimed_by       = NULL,
           lease_token      = NULL,
           lease_expires_at = NULL,
           updated_at       = now()
     WHERE p.outbox_id = p_outbox_id;
  END IF;

  -- A configured rail's controls learn the outcome (ordered blocks, circuit breaker).
  IF EXISTS (SELECT 1 FROM public.outbox_rail_settings s WHERE s.rail_type = v_queued.rail_type) THEN
    PERFORM public.outbox_rail_outcome(v_queued.rail_type, p_outbox_id, v_queued.participant_id,
                                       v_queued.sequence_id, v_state, v_error_code);
  END IF;

  RETURN QUERY SELECT v_attempt_no, v_state;
END;
$$;

-- ------------------------------------------------------------
-- complete_outbox_batch: as in 0029, recorded from the locked rows, the drive written
-- ------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.complete_outbox_batch(
  p_worker_id text,
  p_outcomes  jsonb
)
RETURNS TABLE (
  outbox_id  uuid,
  attempt_no int,
  state      public.outbox_attempt_state,
  lease_lost boolean
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
  v_checked record;
  v_live    uuid[];
  v_tokens  uuid[];
  v_bases   int[];
  v_outcome record;
BEGIN
  IF p_outcomes IS NULL OR jsonb_typeof(p_outcomes) <> 'array' THEN
    RAISE EXCEPTION 'complete_outbox_batch: p_outcomes must be a JSON array of outcome objects, got %',
      COALESCE(jsonb_typeof(p_outcomes), 'NULL')
      USING ERRCODE = '22023';
  END IF;
  IF jsonb_array_length(p_outcomes) > 10000 THEN
    RAISE EXCEPTION 'complete_outbox_batch: % outcomes in one batch; the limit is 10000', jsonb_array_length(p_outcomes)
      USING ERRCODE = '22023';
  END IF;

  -- One pass finds the first malformed element and the first invalid state (a malformed
  -- element anywhere is reported before an invalid state, as before).
  SELECT min(o.ord) FILTER (WHERE jsonb_typeof(o.elem) IS DISTINCT FROM 'object'
                               OR jsonb_typeof(o.elem -> 'outbox_id') IS DISTINCT FROM 'string') AS malformed,
         min(o.ord) FILTER (WHERE (o.elem ->> 'state') IS NULL
                               OR (o.elem ->> 'state') NOT IN ('DISPATCHED', 'FAILED', 'RETRYABLE')) AS bad_state
    INTO v_checked
    FROM jsonb_array_elements(p_outcomes) WITH ORDINALITY AS o(elem, ord);
  IF v_checked.malformed IS NOT NULL THEN
    RAISE EXCEPTION 'complete_outbox_batch: element % of p_outcomes is not an object with a string outbox_id', v_checked.malformed
      USING ERRCODE = '22023';
  END IF;
  IF v_checked.bad_state IS NOT NULL THEN
    RAISE EXCEPTION 'Invalid completion state % (element % of the batch): only DISPATCHED, FAILED or RETRYABLE complete an attempt; nothing of this batch was recorded',
      COALESCE(p_outcomes -> (v_checked.bad_state::int - 1) ->> 'state', 'NULL'), v_checked.bad_state
      USING ERRCODE = 'P7003';
  END IF;

  PERFORM public.assert_retry_delay('complete_outbox_batch', max((o.elem ->> 'retry_delay_seconds')::int))
     FROM jsonb_array_elements(p_outcomes) AS o(elem);

  -- 1) Fence and lock, in outbox_id order (two overlapping batches cannot deadlock). A row
  --    another transaction changed while we waited is re-checked against its new version
  --    (worker, token, clock) before it is locked; once locked nobody can change it until we
  --    commit, so what this step returns is what step 2 records.
  SELECT COALESCE(array_agg(l.outbox_id), '{}'), COALESCE(array_agg(l.lease_token), '{}'),
         COALESCE(array_agg(l.drive_attempt_base), '{}')
    INTO v_live, v_tokens, v_bases
    FROM (
      SELECT p.outbox_id, p.lease_token, p.drive_attempt_base
        FROM jsonb_to_recordset(p_outcomes) AS o(outbox_id uuid, lease_token uuid)
        JOIN public.payment_outbox_pending p
          ON p.outbox_id = o.outbox_id
         AND p.lease_token = o.lease_token
       WHERE p.claimed_by = p_worker_id
         AND p.lease_expires_at > clock_timestamp()
       ORDER BY p.outbox_id
         FOR UPDATE OF p
    ) l;

  -- 2) Record what step 1 locked: the input is matched to the locked rows by id and token
  --    (a hash join over two arrays, not a lookup of every input element per locked row).
  RETURN QUERY
  WITH input AS (
    SELECT o.ord,
           (o.elem ->> 'outbox_id')::uuid                            AS outbox_id,
           (o.elem ->> 'lease_token')::uuid                          AS lease_token,
           (o.elem ->> 'state')::public.outbox_attempt_state         AS requested,
           o.elem ->> 'rail_reference'                               AS rail_reference,
           o.elem ->> 'rail_code'                                    AS rail_code,
           o.elem ->> 'error_code'                                   AS error_code,
           o.elem ->> 'error_message'                                AS error_message,
           (o.elem ->> 'latency_ms')::int                            AS latency_ms,
           (o.elem ->> 'retry_delay_seconds')::int                   AS retry_delay_seconds
      FROM jsonb_array_elements(p_outcomes) WITH ORDINALITY AS o(elem, ord)
  ),
  recorded AS (
    -- One winner per item: the first element in input order that passes the fence.
    SELECT DISTINCT ON (i.outbox_id) i.*, l.drive_attempt_base
      FROM input i
      JOIN unnest(v_live, v_tokens, v_bases) AS l(outbox_id, lease_token, drive_attempt_base)
        ON l.outbox_id = i.outbox_id
       AND l.lease_token = i.lease_token
     ORDER BY i.outbox_id, i.ord
  ),
  numbered AS (
    SELECT r.*, COALESCE(m.max_attempt_no, 0) + 1 AS next_attempt_no,
           1 + (SELECT count(*) FROM public.outbox_redrives x WHERE x.outbox_id = r.outbox_id) AS drive
      FROM recorded r
      LEFT JOIN LATERAL (
        SELECT max(a.attempt_no) AS max_attempt_no
          FROM public.payment_outbox_attempts a
         WHERE a.outbox_id = r.outbox_id
      ) m ON true
  ),
  decided AS (
    SELECT n.*,
           CASE WHEN n.requested <> 'RETRYABLE' THEN n.requested
                WHEN n.next_attempt_no - n.drive_attempt_base >= public.outbox_retry_ceiling()
                THEN 'FAILED'::public.outbox_attempt_state
                ELSE n.requested
           END AS final_state
      FROM numbered n
  ),
  appended AS (
    INSERT INTO public.payment_outbox_attempts (
      outbox_id, attempt_no, state, claimed_at, completed_at,
      rail_reference, rail_code, error_code, error_message, latency_ms, worker_id, drive
    )
    SELECT d.outbox_id, d.next_attempt_no, d.final_state, now(),
           CASE WHEN d.final_state IN ('DISPATCHED', 'FAILED') THEN now() END,
           CASE WHEN length(d.rail_reference) <= 512 THEN d.rail_reference END,
           left(d.rail_code, 64),
           left(CASE WHEN d.final_state <> d.requested THEN COALESCE(d.error_code, 'RETRY_CEILING')
                     ELSE d.error_code
                END, 64),
           left(d.error_message, 1000), d.latency_ms, p_worker_id, d.drive
      FROM decided d
     ORDER BY d.ord
    RETURNING 1
  ),
  finished AS (
    DELETE FROM public.payment_outbox_pending p
     USING decided d
     WHERE p.outbox_id = d.outbox_id
       AND d.final_state IN ('DISPATCHED', 'FAILED')
    RETURNING 1
  ),
  rescheduled AS (
    UPDATE public.payment_outbox_pending p
       SET attempt_count    = GREATEST(p.attempt_count, d.next_attempt_no),
           next_attempt_at  = now() + make_interval(secs => GREATEST(1, COALESCE(d.retry_delay_seconds, 1))),
           claimed_by       = NULL,
           lease_token      = NULL,
           lease_expires_at = NULL,
           updated_at       = now()
      FROM decided d
     WHERE p.outbox_id = d.outbox_id
       AND d.final_state = 'RETRYABLE'
    RETURNING 1
  )
  SELECT i.outbox_id, d.next_attempt_no, d.final_state, d.ord IS NULL
    FROM input i
    LEFT JOIN decided d ON d.ord = i.ord
   ORDER BY i.ord;

  -- Configured rails' controls learn the outcomes, in the order they were recorded (the
  -- attempts this call appended are the latest of the items it fenced).
  IF EXISTS (SELECT 1 FROM public.outbox_rail_settings) THEN
    FOR v_outcome IN
      SELECT i.rail_type, i.outbox_id, i.participant_id, i.sequence_id, a.state, a.error_code
        FROM unnest(v_live) AS l(outbox_id)
        JOIN public.payment_outbox_items i ON i.outbox_id = l.outbox_id
        JOIN public.outbox_rail_settings s ON s.rail_type = i.rail_type
        CROSS JOIN LATERAL (
          SELECT x.attempt_id, x.state, x.error_code
            FROM public.payment_outbox_attempts x
           WHERE x.outbox_id = l.outbox_id
           ORDER BY x.attempt_no DESC
           LIMIT 1
        ) a
       ORDER BY a.attempt_id
    LOOP
      PERFORM public.outbox_rail_outcome(v_outcome.rail_type, v_outcome.outbox_id, v_outcome.participant_id,
                                         v_outcome.sequence_id, v_outcome.state, v_outcome.error_code);
    END LOOP;
  END IF;
END;
$$;

-- ------------------------------------------------------------
-- repair_expired_leases: as in 0024, the drive written, updated_at set on requeue
-- ------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.repair_expired_leases(
  p_batch_size int,
  p_worker_id  text
)
RETURNS TABLE (
  outbox_id  uuid,
  attempt_no int
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
  v_ceiling    int := public.outbox_retry_ceiling();
  v_item       record;
  v_attempt_no int;
  v_drive      int;
BEGIN
  IF p_batch_size IS NULL OR p_batch_size < 1 OR p_batch_size > 1000 THEN
    RAISE EXCEPTION 'repair_expired_leases: p_batch_size must be between 1 and 1000, got %', p_batch_size
      USING ERRCODE = '22023';
  END IF;
  IF p_worker_id IS NULL OR btrim(p_worker_id) = '' OR length(p_worker_id) > 128 THEN
    RAISE EXCEPTION 'repair_expired_leases: p_worker_id must be a non-empty worker id of at most 128 characters'
      USING ERRCODE = '22023';
  END IF;

  FOR v_item IN
    SELECT p.outbox_id, p.claimed_by, p.drive_attempt_base
      FROM public.payment_outbox_pending p
     WHERE p.lease_expires_at IS NOT NULL
       AND p.lease_expires_at <= now()
     ORDER BY p.lease_expires_at, p.created_at
     LIMIT p_batch_size
       FOR UPDATE SKIP LOCKED
  LOOP
    SELECT COALESCE(MAX(a.attempt_no), 0) + 1
      INTO v_attempt_no
      FROM public.payment_outbox_attempts a
     WHERE a.outbox_id = v_item.outbox_id;
    v_drive := 1 + (SELECT count(*) FROM public.outbox_redrives r WHERE r.outbox_id = v_item.outbox_id);

    IF v_attempt_no - v_item.drive_attempt_base >= v_ceiling THEN
      INSERT INTO public.payment_outbox_attempts (
        outbox_id, attempt_no, state, claimed_at, completed_at, error_code, error_message, worker_id, drive
      )
      VALUES (
        v_item.outbox_id, v_attempt_no, 'FAILED', now(), now(), 'RETRY_CEILING',
        left(format('lease held by %s expired on attempt %s, which reached the retry ceiling %s; not requeued',
                    v_item.claimed_by, v_attempt_no, v_ceiling), 1000),
        p_worker_id, v_drive
      );

      DELETE FROM public.payment_outbox_pending p
       WHERE p.outbox_id = v_item.outbox_id;
    ELSE
      INSERT INTO public.payment_outbox_attempts (
        outbox_id, attempt_no, state, claimed_at, completed_at, worker_id, drive
      )
      VALUES (
        v_item.outbox_id, v_attempt_no, 'ZOMBIE_REQUEUE', now(), now(), p_worker_id, v_drive
      );

      UPDATE public.payment_outbox_pending p
         SET attempt_count    = GREATEST(p.attempt_count, v_attempt_no),
             next_attempt_at  = now() + interval '1 second',
             claimed_by       = NULL,
             lease_token      = NULL,
             lease_expires_at = NULL,
             updated_at       = now()
       WHERE p.outbox_id = v_item.outbox_id;
    END IF;

    outbox_id := v_item.outbox_id;
    attempt_no := v_attempt_no;
    RETURN NEXT;
  END LOOP;
END;
$$;
