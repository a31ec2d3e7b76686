-- symphony:no-transaction
-- 0051_items_traceparent_check_without_counted_repetition.sql
-- The item record's traceparent CHECK, the same rule in a form PostgreSQL evaluates about
-- three times faster (issue 9), as 0034 did for the payload digest.
--
-- ck_items_traceparent (0020) says traceparent ~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$'.
-- PostgreSQL's regex engine runs counted repetitions slowly: in a CHECK on 50,000 inserted rows
-- a traceparent cost 5-6 us against the form below, and every item enqueued with a producer's
-- trace context pays it (single and batch). Measured with pg_stat_statements on one connection
-- enqueueing 40 batches of 500 items that all carry a traceparent: the statement that inserts
-- the items and queues them took 12.4-12.5 ms per batch with the old CHECK, 9.5-10.1 with this
-- one (the enqueue's own check, in outbox_item_input_problem, showed no such cost and is
-- unchanged).
--
-- Same rule: a string matches ^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$ exactly when it is 55
-- characters long, matches ^00-[0-9a-f]+-[0-9a-f]+-[0-9a-f]+$ and has a '-' at positions 36
-- and 53: that pattern has exactly three dashes, one at position 3 and two the positions fix,
-- leaving 32, 16 and 2 hex digits between them (ARE's $ is the end of the string).
--
-- No transaction, so a live record is not locked for the scan: the new CHECK is added NOT
-- VALID (a brief ACCESS EXCLUSIVE lock, no scan; it holds for every row written from then
-- on), validated under SHARE UPDATE EXCLUSIVE (enqueues and claims go on meanwhile), and only
-- then is the old one dropped. Each step can be run again after an interruption.
DO $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM pg_catalog.pg_constraint
     WHERE conrelid = 'public.payment_outbox_items'::regclass
       AND conname = 'ck_items_traceparent_w3c'
  ) THEN
    ALTER TABLE public.payment_outbox_items
      ADD CONSTRAINT ck_items_traceparent_w3c
      CHECK (traceparent IS NULL
             OR (length(traceparent) = 55
                 AND traceparent ~ '^00-[0-9a-f]+-[0-9a-f]+-[0-9a-f]+$'
                 AND substr(traceparent, 36, 1) = '-'
                 AND substr(traceparent, 53, 1) = '-')) NOT VALID;
  END IF;
END;
$$;

ALTER TABLE public.payment_outbox_items VALIDATE CONSTRAINT ck_items_traceparent_w3c;

ALTER TABLE public.payment_outbox_items DROP CONSTRAINT IF EXISTS ck_items_traceparent;
