-- 0007_outbox_pending_indexes.sql
-- The due-claim index. claim_outbox_batch selects
--   WHERE next_attempt_at <= now() AND (no live lease) ORDER BY next_attempt_at, created_at LIMIT n
-- so a composite index in that order serves both the range and the ORDER BY, and the
-- LIMIT stops the scan early. It cannot be partial on "due": an index predicate must be
-- immutable and cannot call now(). Live leases do not clutter the front of the scan
-- because claiming moves next_attempt_at to the lease expiry (0002).
-- Proved by EXPLAIN on 100k rows in test/db/claim.test.ts.
CREATE INDEX ix_pending_due
  ON public.payment_outbox_pending (next_attempt_at, created_at);
