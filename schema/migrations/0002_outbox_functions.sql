-- 0002_outbox_functions.sql
-- The outbox state machine: sequence allocation, idempotent enqueue, leased claim,
-- lease-fenced completion, expired-lease repair, and the retry ceiling they share.
--
-- Corrections to the seed draft:
--   * RETURNS TABLE column names are OUT variables in PL/pgSQL, so an unqualified
--     `outbox_id` is ambiguous: every function declares `#variable_conflict use_column`
--     and qualifies every column with its table alias anyway.
--   * claim also returns created_at (the relayer's enqueue-to-dispatch latency).
--   * complete checks the requested state before the lease (P7003 wins over P7002).
--   * the retry ceiling is read from the GUC symphony.outbox_retry_ceiling.
--   * claim takes only rows with no lease at all; an expired lease is requeued by repair
--     (a ZOMBIE_REQUEUE attempt), never claimed directly (see claim_outbox_batch).
-- Privileges are granted in 0004_privileges (none here).

-- ------------------------------------------------------------
-- Retry ceiling (shared by completion and, from 0006, by repair)
-- ------------------------------------------------------------
-- The highest attempt number that may still be RETRYABLE; attempt number `ceiling`
-- and beyond end FAILED. Set per session/role/database, e.g.
--   ALTER DATABASE symphony SET symphony.outbox_retry_ceiling = '20';
CREATE FUNCTION public.outbox_retry_ceiling()
RETURNS int
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  v_raw   text := current_setting('symphony.outbox_retry_ceiling', true);
  v_value int;
BEGIN
  IF v_raw IS NULL OR btrim(v_raw) = '' THEN
    RETURN 20;
  END IF;
  -- Validate the text before casting so a bad setting is a clear 22023, never a cast crash.
  IF btrim(v_raw) ~ '^[0-9]{1,4}$' THEN
    v_value := btrim(v_raw)::int;
    IF v_value BETWEEN 1 AND 1000 THEN
      RETURN v_value;
    END IF;
  END IF;
  RAISE EXCEPTION 'symphony.outbox_retry_ceiling must be an integer between 1 and 1000, but it is set to "%"', v_raw
    USING ERRCODE = '22023',
          HINT = 'Fix or RESET the setting symphony.outbox_retry_ceiling (unset means 20).';
END;
$$;

-- ------------------------------------------------------------
-- Per-participant sequence allocator
-- ------------------------------------------------------------
-- The upsert's row lock serialises allocations of one participant until commit, so the
-- sequence is gap-free as long as enqueueing transactions commit.
CREATE FUNCTION public.bump_participant_outbox_seq(p_participant_id text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
  v_allocated bigint;
BEGIN
  INSERT INTO public.participant_outbox_sequences AS s (participant_id, next_sequence_id)
  VALUES (p_participant_id, 2)
  ON CONFLICT (participant_id) DO UPDATE
    SET next_sequence_id = s.next_sequence_id + 1,
        updated_at = now()
  RETURNING s.next_sequence_id - 1 INTO v_allocated;

  RETURN v_allocated;
END;
$$;

-- ------------------------------------------------------------
-- enqueue_payment_outbox: idempotent on (instruction_id, idempotency_key)
-- ------------------------------------------------------------
-- Returns the item's outbox_id, sequence_id, created_at and state: 'PENDING' while it
-- is queued, otherwise the state of its terminal attempt (DISPATCHED or FAILED); a
-- repeated enqueue never creates a second item nor consumes a sequence number.
-- A non-object payload is refused by ck_pending_payload_is_object (23514).
CREATE FUNCTION public.enqueue_payment_outbox(
  p_instruction_id  text,
  p_participant_id  text,
  p_idempotency_key text,
  p_rail_type       text,
  p_payload         jsonb
)
RETURNS TABLE (
  outbox_id   uuid,
  sequence_id bigint,
  created_at  timestamptz,
  state       text
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
  v_pending  record;
  v_attempt  record;
  v_sequence bigint;
BEGIN
  -- Serialises enqueues of the same (instruction, key) until commit; each later statement
  -- (READ COMMITTED) then sees the winner's row. One 64-bit key from both fields.
  PERFORM pg_advisory_xact_lock(
    hashtextextended(p_instruction_id || chr(31) || p_idempotency_key, 1)
  );

  SELECT p.outbox_id, p.sequence_id, p.created_at
    INTO v_pending
    FROM public.payment_outbox_pending p
   WHERE p.instruction_id = p_instruction_id
     AND p.idempotency_key = p_idempotency_key;

  IF FOUND THEN
    RETURN QUERY SELECT v_pending.outbox_id, v_pending.sequence_id, v_pending.created_at, 'PENDING'::text;
    RETURN;
  END IF;

  -- No pending row but attempts: the item already reached its terminal outcome.
  -- Its enqueue time survives in the uuidv7 outbox_id (millisecond precision).
  SELECT a.outbox_id, a.sequence_id, a.state
    INTO v_attempt
    FROM public.payment_outbox_attempts a
   WHERE a.instruction_id = p_instruction_id
     AND a.idempotency_key = p_idempotency_key
   ORDER BY (a.state IN ('DISPATCHED', 'FAILED')) DESC, a.attempt_no DESC
   LIMIT 1;

  IF FOUND THEN
    RETURN QUERY SELECT v_attempt.outbox_id, v_attempt.sequence_id,
                        uuid_extract_timestamp(v_attempt.outbox_id), v_attempt.state::text;
    RETURN;
  END IF;

  v_sequence := public.bump_participant_outbox_seq(p_participant_id);

  -- No unique_violation handler (the seed had one): the advisory lock already rules out
  -- a concurrent duplicate under READ COMMITTED; under a stricter isolation level the
  -- 23505 surfaces and the caller retries, instead of a half-handled duplicate.
  INSERT INTO public.payment_outbox_pending AS p (
    instruction_id, participant_id, sequence_id, idempotency_key, rail_type, payload
  )
  VALUES (
    p_instruction_id, p_participant_id, v_sequence, p_idempotency_key, p_rail_type, p_payload
  )
  RETURNING p.outbox_id, p.sequence_id, p.created_at INTO v_pending;

  RETURN QUERY SELECT v_pending.outbox_id, v_pending.sequence_id, v_pending.created_at, 'PENDING'::text;
END;
$$;

-- ------------------------------------------------------------
-- claim_outbox_batch: lease up to p_batch_size due items to p_worker_id
-- ------------------------------------------------------------
-- Claimable = no lease at all (claimed_by IS NULL) and next_attempt_at <= now().
-- A row whose lease EXPIRED is deliberately not claimable: it stays put until
-- repair_expired_leases requeues it with a ZOMBIE_REQUEUE attempt, which counts toward
-- the retry ceiling. So every worker crash leaves a row in the append-only ledger, and
-- an item that kills its worker every time (a poison pill) reaches the ceiling and ends
-- FAILED instead of crash-looping the whole fleet one claim at a time.
-- The inner SELECT's predicate `claimed_by IS NULL` matches the partial index
-- ix_pending_due (0007) word for word, so the planner can use it; live and expired
-- leases are not in that index at all, so a claim never walks past in-flight rows.
-- Claim leaves next_attempt_at alone (a leased row is outside the index, so there is
-- nothing to push out of the way); release, retry and repair set it when they unlease.
-- SKIP LOCKED lets competing workers claim disjoint batches without waiting; a row another
-- claimer leased meanwhile is re-checked against `claimed_by IS NULL` and skipped.
CREATE FUNCTION public.claim_outbox_batch(
  p_batch_size    int,
  p_worker_id     text,
  p_lease_seconds int
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
  created_at       timestamptz
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
BEGIN
  IF p_batch_size IS NULL OR p_batch_size < 1 THEN
    RAISE EXCEPTION 'claim_outbox_batch: p_batch_size must be >= 1, got %', p_batch_size
      USING ERRCODE = '22023';
  END IF;
  IF p_lease_seconds IS NULL OR p_lease_seconds < 1 THEN
    RAISE EXCEPTION 'claim_outbox_batch: p_lease_seconds must be >= 1, got %', p_lease_seconds
      USING ERRCODE = '22023';
  END IF;
  IF p_worker_id IS NULL OR btrim(p_worker_id) = '' THEN
    RAISE EXCEPTION 'claim_outbox_batch: p_worker_id must be a non-empty worker id'
      USING ERRCODE = '22023';
  END IF;

  RETURN QUERY
  WITH due AS (
    SELECT d.outbox_id
      FROM public.payment_outbox_pending d
     WHERE d.claimed_by IS NULL
       AND d.next_attempt_at <= now()
     ORDER BY d.next_attempt_at, d.created_at
     LIMIT p_batch_size
     FOR UPDATE SKIP LOCKED
  )
  UPDATE public.payment_outbox_pending p
     SET claimed_by       = p_worker_id,
         lease_token      = uuidv7(),
         lease_expires_at = now() + make_interval(secs => p_lease_seconds)
    FROM due
   WHERE p.outbox_id = due.outbox_id
  RETURNING p.outbox_id, p.instruction_id, p.participant_id, p.sequence_id, p.idempotency_key,
            p.rail_type, p.payload, p.attempt_count, p.lease_token, p.lease_expires_at, p.created_at;
END;
$$;

-- ------------------------------------------------------------
-- complete_outbox_attempt: record one outcome, fenced by the lease
-- ------------------------------------------------------------
-- P7003 for a state other than DISPATCHED/FAILED/RETRYABLE (checked first);
-- P7002 LEASE_LOST unless this worker still holds this unexpired lease token.
-- DISPATCHED/FAILED append the terminal attempt and delete the pending row;
-- RETRYABLE appends an attempt, clears the lease and reschedules after the delay
-- (at least 1 second), unless the attempt number reached the retry ceiling, which
-- turns it into FAILED.
CREATE FUNCTION public.complete_outbox_attempt(
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
  v_item       record;
  v_attempt_no int;
  v_state      public.outbox_attempt_state;
  v_error_code text := p_error_code;
BEGIN
  IF p_state IS NULL OR p_state NOT IN ('DISPATCHED', 'FAILED', 'RETRYABLE') THEN
    RAISE EXCEPTION 'Invalid completion state %: only DISPATCHED, FAILED or RETRYABLE complete an attempt', p_state
      USING ERRCODE = 'P7003';
  END IF;

  SELECT p.instruction_id, p.participant_id, p.sequence_id, p.idempotency_key, p.rail_type, p.payload
    INTO v_item
    FROM public.payment_outbox_pending p
   WHERE p.outbox_id = p_outbox_id
     AND p.claimed_by = p_worker_id
     AND p.lease_token = p_lease_token
     AND p.lease_expires_at > now()
     FOR UPDATE;

  IF NOT FOUND THEN
    RAISE EXCEPTION 'LEASE_LOST: outbox item % is not leased to worker % with that token (lease expired, repaired, reclaimed or completed)',
      p_outbox_id, p_worker_id
      USING ERRCODE = 'P7002',
            HINT = 'Another worker owns the item now; do not retry this completion.';
  END IF;

  SELECT COALESCE(MAX(a.attempt_no), 0) + 1
    INTO v_attempt_no
    FROM public.payment_outbox_attempts a
   WHERE a.outbox_id = p_outbox_id;

  v_state := p_state;
  IF p_state = 'RETRYABLE' AND v_attempt_no >= public.outbox_retry_ceiling() THEN
    v_state := 'FAILED';
    v_error_code := COALESCE(p_error_code, 'RETRY_CEILING');
  END IF;

  INSERT INTO public.payment_outbox_attempts (
    outbox_id, instruction_id, participant_id, sequence_id, idempotency_key, rail_type, payload,
    attempt_no, state, claimed_at, completed_at,
    rail_reference, rail_code, error_code, error_message, latency_ms, worker_id
  )
  VALUES (
    p_outbox_id, v_item.instruction_id, v_item.participant_id, v_item.sequence_id,
    v_item.idempotency_key, v_item.rail_type, v_item.payload,
    v_attempt_no, v_state, now(),
    CASE WHEN v_state IN ('DISPATCHED', 'FAILED') THEN now() END,
    p_rail_reference, p_rail_code, v_error_code, p_error_message, p_latency_ms, p_worker_id
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
           lease_expires_at = NULL
     WHERE p.outbox_id = p_outbox_id;
  END IF;

  RETURN QUERY SELECT v_attempt_no, v_state;
END;
$$;

-- ------------------------------------------------------------
-- repair_expired_leases: requeue items whose worker vanished
-- ------------------------------------------------------------
-- Only rows whose lease expired; each gets a ZOMBIE_REQUEUE attempt, its lease cleared
-- and is due again one second later. This is the only way an expired lease becomes
-- claimable again (claim_outbox_batch takes unleased rows only). SKIP LOCKED: concurrent
-- repairers take disjoint rows. 0006 replaces this with the retry-ceiling-aware version.
CREATE FUNCTION public.repair_expired_leases(
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
  v_item       record;
  v_attempt_no int;
BEGIN
  FOR v_item IN
    SELECT p.outbox_id, p.instruction_id, p.participant_id, p.sequence_id,
           p.idempotency_key, p.rail_type, p.payload
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

    INSERT INTO public.payment_outbox_attempts (
      outbox_id, instruction_id, participant_id, sequence_id, idempotency_key, rail_type, payload,
      attempt_no, state, claimed_at, completed_at, worker_id
    )
    VALUES (
      v_item.outbox_id, v_item.instruction_id, v_item.participant_id, v_item.sequence_id,
      v_item.idempotency_key, v_item.rail_type, v_item.payload,
      v_attempt_no, 'ZOMBIE_REQUEUE', now(), now(), p_worker_id
    );

    UPDATE public.payment_outbox_pending p
       SET attempt_count    = GREATEST(p.attempt_count, v_attempt_no),
           next_attempt_at  = now() + interval '1 second',
           claimed_by       = NULL,
           lease_token      = NULL,
           lease_expires_at = NULL
     WHERE p.outbox_id = v_item.outbox_id;

    outbox_id := v_item.outbox_id;
    attempt_no := v_attempt_no;
    RETURN NEXT;
  END LOOP;
END;
$$;
