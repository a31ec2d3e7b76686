-- 0007_outbox_pending_indexes.sql
-- The due-claim index. claim_outbox_batch selects
--   WHERE claimed_by IS NULL AND next_attempt_at <= now() ORDER BY next_attempt_at, created_at LIMIT n
-- so a composite index in that order serves both the range and the ORDER BY, and the
-- LIMIT stops the scan early. It is partial on "no lease" (claimed_by IS NULL; the
-- all-or-nothing CHECK makes that "no lease at all"): leased rows, live or expired, are
-- never claimable (an expired lease goes back through repair_expired_leases), so they are
-- left out and a claim never walks past in-flight rows. It cannot be partial on "due":
-- an index predicate must be immutable and cannot call now().
-- A query uses it only if its WHERE implies the predicate, so claim_outbox_batch (0002)
-- and outbox_next_attempt_at (0015) both say `claimed_by IS NULL` literally.
-- Proved by EXPLAIN on 100k rows in test/db/claim.test.ts.
CREATE INDEX ix_pending_due
  ON public.payment_outbox_pending (next_attempt_at, created_at)
  WHERE claimed_by IS NULL;
