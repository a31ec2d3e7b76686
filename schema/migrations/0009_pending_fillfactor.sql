-- 0009_pending_fillfactor.sql
-- payment_outbox_pending is a high-churn queue: every item is inserted, updated at least
-- twice (claim, completion or requeue) and deleted. Leave free space in each page for
-- updated row versions, and vacuum/analyze after a small fraction of changes rather than
-- the default 20%, without cost throttling, so dead tuples do not pile up in front of the
-- claim scan.
ALTER TABLE public.payment_outbox_pending SET (
  fillfactor = 80,
  autovacuum_vacuum_scale_factor = 0.01,
  autovacuum_vacuum_threshold = 500,
  autovacuum_vacuum_insert_scale_factor = 0.01,
  autovacuum_vacuum_insert_threshold = 500,
  autovacuum_analyze_scale_factor = 0.02,
  autovacuum_analyze_threshold = 500,
  autovacuum_vacuum_cost_delay = 0
);
