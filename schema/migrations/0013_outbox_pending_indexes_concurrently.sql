-- symphony:no-transaction
-- 0013_outbox_pending_indexes_concurrently.sql
-- Lease-expiry index for repair_expired_leases (WHERE lease_expires_at <= now()
-- ORDER BY lease_expires_at). Built CONCURRENTLY so adding it to a live queue does not
-- block enqueue/claim; hence no transaction. The runner drops an INVALID leftover of an
-- interrupted build before retrying, so IF NOT EXISTS never keeps a broken index.
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_pending_lease_expiry
  ON public.payment_outbox_pending (lease_expires_at)
  WHERE lease_expires_at IS NOT NULL;
