-- 0014_outbox_lease_release.sql
-- release_outbox_leases: a worker shutting down hands back items it claimed but never
-- dispatched, so they are due again now instead of waiting for their lease to expire
-- and a repair. Fenced like completion: only rows still leased to this worker with this
-- token and an unexpired lease are released; anything else is silently not released
-- (it is someone else's now). No attempt is appended: nothing was sent to a rail.
-- Returns the released ids and, if any, wakes other workers (NOTIFY outbox_pending).
CREATE FUNCTION public.release_outbox_leases(
  p_worker_id    text,
  p_outbox_ids   uuid[],
  p_lease_tokens uuid[]
)
RETURNS TABLE (outbox_id uuid)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
BEGIN
  IF cardinality(p_outbox_ids) IS DISTINCT FROM cardinality(p_lease_tokens) THEN
    RAISE EXCEPTION 'release_outbox_leases: % outbox ids but % lease tokens; pass one token per id, in the same order',
      cardinality(p_outbox_ids), cardinality(p_lease_tokens)
      USING ERRCODE = '22023';
  END IF;

  -- Rows are locked in outbox_id order, as complete_outbox_batch does, so a release and a
  -- batch completion over overlapping ids can never deadlock.
  RETURN QUERY
  WITH fenced AS (
    SELECT p.outbox_id
      FROM public.payment_outbox_pending p
      JOIN unnest(p_outbox_ids, p_lease_tokens) AS r(outbox_id, lease_token)
        ON p.outbox_id = r.outbox_id AND p.lease_token = r.lease_token
     WHERE p.claimed_by = p_worker_id
       AND p.lease_expires_at > now()
     ORDER BY p.outbox_id
       FOR UPDATE OF p
  ),
  released AS (
    UPDATE public.payment_outbox_pending p
       SET claimed_by       = NULL,
           lease_token      = NULL,
           lease_expires_at = NULL,
           next_attempt_at  = now()
      FROM fenced
     WHERE p.outbox_id = fenced.outbox_id
    RETURNING p.outbox_id
  )
  SELECT released.outbox_id FROM released;

  IF FOUND THEN
    PERFORM pg_notify('outbox_pending', '');
  END IF;
END;
$$;

REVOKE ALL ON FUNCTION public.release_outbox_leases(text, uuid[], uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.release_outbox_leases(text, uuid[], uuid[]) TO symphony_executor;
