-- symphony:no-transaction
-- 0041_drop_pending_due_index.sql
-- Since 0040 nothing reads ix_pending_due (0007): every claim and outbox_next_attempt_at()
-- reach the due rows through ix_pending_due_by_rail (0039). Keeping it would cost every
-- enqueue and every rescheduled retry one more index entry for nothing. Dropped
-- CONCURRENTLY, so a live queue's claims and enqueues are not blocked while it goes.
DROP INDEX CONCURRENTLY IF EXISTS public.ix_pending_due;
