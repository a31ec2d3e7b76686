-- 0036_outbox_claim_complete_per_item_cuts.sql
-- Two per-item costs of the claim and the completion, measured with `perf record` on the
-- database backends during a drain (issue 9), cut without changing what either function
-- returns, fences or records:
--
--   * Lease tokens. The claim drew a uuidv7() per leased item. Each draw is a getpid() and a
--     DRBG draw in OpenSSL: 2.5 us apiece on the development machine, and with the attempt's
--     own uuidv7() id 6.5 % of the backends' CPU in a drain. A claim now draws one token and
--     gives it to every item it leases. Every fence (complete, batch complete, release) pairs
--     the token with the item's id, the worker and the lease expiry, and a new claim, by any
--     worker, always draws a new one, so a fence admits exactly what it admitted before.
--   * Drive counts. Batch completion counted each recorded item's re-drives with a subquery
--     per item, and the statement trigger of 0032 counted them again per appended attempt:
--     a re-scan of outbox_redrives for every row. Both now count the re-drives of all their
--     items in one grouped scan and join it. The same counts, so the same drives and the
--     same refusals (P7503).
--
-- Measured with one client claiming and completing 256 items at a time (20,000 items,
-- three alternating runs): 76-89 us of backend CPU per item before, 69-74 after.

CREATE OR REPLACE FUNCTION public.outbox_attempts_check_drive()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  v_wrong record;
BEGIN
  -- One count per appended item, from one scan of the re-drives of those items (a count per
  -- row re-scanned the re-drive table for every attempt).
  SELECT n.outbox_id, n.drive, 1 + COALESCE(r.redrives, 0) AS expected
    INTO v_wrong
    FROM appended_attempts n
    LEFT JOIN (
      SELECT x.outbox_id, count(*) AS redrives
        FROM public.outbox_redrives x
       WHERE x.outbox_id IN (SELECT a.outbox_id FROM appended_attempts a)
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
  redriven AS (
    -- The re-drives of the fenced items, counted in one scan (not one per item).
    SELECT x.outbox_id, count(*) AS redrives
      FROM public.outbox_redrives x
     WHERE x.outbox_id = ANY (v_live)
     GROUP BY x.outbox_id
  ),
  numbered AS (
    SELECT r.*, COALESCE(m.max_attempt_no, 0) + 1 AS next_attempt_no,
           1 + COALESCE(x.redrives, 0) AS drive
      FROM recorded r
      LEFT JOIN LATERAL (
        SELECT max(a.attempt_no) AS max_attempt_no
          FROM public.payment_outbox_attempts a
         WHERE a.outbox_id = r.outbox_id
      ) m ON true
      LEFT JOIN redriven x ON x.outbox_id = r.outbox_id
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
