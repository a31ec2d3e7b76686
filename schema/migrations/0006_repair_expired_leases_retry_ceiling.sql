-- 0006_repair_expired_leases_retry_ceiling.sql
-- repair_expired_leases, sharing the retry ceiling with complete_outbox_attempt.
--
-- Why: a worker that crashes (or hangs past its lease) on the same item every time would
-- otherwise have the item requeued by repair forever, each requeue a ZOMBIE_REQUEUE
-- attempt that completion's ceiling never sees. A zombie requeue counts as an attempt
-- like a RETRYABLE outcome does: when its attempt number reaches outbox_retry_ceiling()
-- (GUC symphony.outbox_retry_ceiling, default 20) the item is ended with a FAILED attempt
-- (error_code 'RETRY_CEILING') and its pending row is deleted, instead of being requeued.
--
-- Otherwise unchanged: only rows whose lease expired are touched; each gets one attempt,
-- its lease cleared and is due again one second later. Columns are qualified (RETURNS
-- TABLE names are PL/pgSQL variables). Repair is the only path back to the queue for an
-- expired lease: claim_outbox_batch never takes a leased row, live or expired, so every
-- crash is recorded here and counted toward the ceiling. FOR UPDATE SKIP LOCKED makes
-- concurrent repairers take disjoint rows; a row another transaction changed meanwhile is
-- re-checked against "lease expired" before it is locked, so it is never repaired twice.

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
  -- Read once, before any row changes: a bad setting fails the call with 22023.
  v_ceiling    int := public.outbox_retry_ceiling();
  v_item       record;
  v_attempt_no int;
BEGIN
  IF p_batch_size IS NULL OR p_batch_size < 1 THEN
    RAISE EXCEPTION 'repair_expired_leases: p_batch_size must be >= 1, got %', p_batch_size
      USING ERRCODE = '22023';
  END IF;
  IF p_worker_id IS NULL OR btrim(p_worker_id) = '' THEN
    RAISE EXCEPTION 'repair_expired_leases: p_worker_id must be a non-empty worker id'
      USING ERRCODE = '22023';
  END IF;

  FOR v_item IN
    SELECT p.outbox_id, p.instruction_id, p.participant_id, p.sequence_id,
           p.idempotency_key, p.rail_type, p.payload, p.claimed_by
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

    IF v_attempt_no >= v_ceiling THEN
      INSERT INTO public.payment_outbox_attempts (
        outbox_id, instruction_id, participant_id, sequence_id, idempotency_key, rail_type, payload,
        attempt_no, state, claimed_at, completed_at, error_code, error_message, worker_id
      )
      VALUES (
        v_item.outbox_id, v_item.instruction_id, v_item.participant_id, v_item.sequence_id,
        v_item.idempotency_key, v_item.rail_type, v_item.payload,
        v_attempt_no, 'FAILED', now(), now(), 'RETRY_CEILING',
        format('lease held by %s expired on attempt %s, which reached the retry ceiling %s; not requeued',
               v_item.claimed_by, v_attempt_no, v_ceiling),
        p_worker_id
      );

      DELETE FROM public.payment_outbox_pending p
       WHERE p.outbox_id = v_item.outbox_id;
    ELSE
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
    END IF;

    outbox_id := v_item.outbox_id;
    attempt_no := v_attempt_no;
    RETURN NEXT;
  END LOOP;
END;
$$;
