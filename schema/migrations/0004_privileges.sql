-- 0004_privileges.sql
-- Revoke first, then grant the least each runtime role needs. Later migrations grant
-- what they create the same way (revoke-first), and the default privileges below make a
-- forgotten REVOKE fail safe: new tables and functions start with no PUBLIC access.
--
-- Who may do what on the outbox (0001/0002):
--   symphony_ingest   EXECUTE enqueue_payment_outbox                      (no table access)
--   symphony_executor EXECUTE claim_outbox_batch, complete_outbox_attempt,
--                     repair_expired_leases                               (no table access;
--                     not bump_participant_outbox_seq, not enqueue)
--   symphony_control  SELECT + MAINTAIN on the three outbox tables. "Table maintenance"
--                     means VACUUM / ANALYZE / REINDEX (PostgreSQL 17+'s MAINTAIN
--                     privilege), not data edits: every write to the queue must go through
--                     the functions, which keep sequencing, idempotency and lease fencing
--                     intact. A hand-edited lease or a deleted pending row is a double
--                     dispatch or a lost payment, so control gets no INSERT/UPDATE/DELETE/
--                     TRUNCATE here (and the attempt ledger's triggers refuse them anyway).
--   symphony_readonly,
--   symphony_auditor  SELECT on payment_outbox_pending and payment_outbox_attempts (and the
--                     migration ledger); nothing on participant_outbox_sequences.
--   PUBLIC            nothing: no USAGE or CREATE on schema public, no table, sequence or
--                     function privilege (PostgreSQL grants EXECUTE to PUBLIC by default).
--                     Types keep PostgreSQL's default PUBLIC USAGE: without USAGE on the
--                     schema, PUBLIC cannot even name them.

-- ------------------------------------------------------------
-- 1) Revoke first
-- ------------------------------------------------------------
REVOKE ALL ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON SCHEMA public
  FROM symphony_control, symphony_ingest, symphony_executor, symphony_readonly, symphony_auditor;

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA public
  FROM symphony_control, symphony_ingest, symphony_executor, symphony_readonly, symphony_auditor;

REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public
  FROM symphony_control, symphony_ingest, symphony_executor, symphony_readonly, symphony_auditor;

-- ROUTINES covers functions and procedures alike.
REVOKE ALL ON ALL ROUTINES IN SCHEMA public FROM PUBLIC;
REVOKE ALL ON ALL ROUTINES IN SCHEMA public
  FROM symphony_control, symphony_ingest, symphony_executor, symphony_readonly, symphony_auditor;

-- Default privileges for objects the migrating role creates from now on. The EXECUTE
-- default for PUBLIC is global, and a per-schema (IN SCHEMA) default can only add to the
-- global one, never take away from it: so these are deliberately not IN SCHEMA.
-- They apply to objects created by the role running this migration; run every migration
-- as the same owner (the privilege tests check the whole catalog either way).
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON ROUTINES FROM PUBLIC;
ALTER DEFAULT PRIVILEGES REVOKE ALL ON TABLES FROM PUBLIC;
ALTER DEFAULT PRIVILEGES REVOKE ALL ON SEQUENCES FROM PUBLIC;

-- ------------------------------------------------------------
-- 2) Schema: resolve names, never create objects
-- ------------------------------------------------------------
GRANT USAGE ON SCHEMA public
  TO symphony_control, symphony_ingest, symphony_executor, symphony_readonly, symphony_auditor;

-- ------------------------------------------------------------
-- 3) Ingest: enqueue only
-- ------------------------------------------------------------
GRANT EXECUTE ON FUNCTION public.enqueue_payment_outbox(text, text, text, text, jsonb)
  TO symphony_ingest;

-- ------------------------------------------------------------
-- 4) Executor: the relayer's runtime functions only
-- ------------------------------------------------------------
GRANT EXECUTE ON FUNCTION public.claim_outbox_batch(int, text, int) TO symphony_executor;
GRANT EXECUTE ON FUNCTION public.complete_outbox_attempt(
  uuid, uuid, text, public.outbox_attempt_state, text, text, text, text, int, int
) TO symphony_executor;
GRANT EXECUTE ON FUNCTION public.repair_expired_leases(int, text) TO symphony_executor;

-- ------------------------------------------------------------
-- 5) Control: read and maintain, never write the queue directly
-- ------------------------------------------------------------
GRANT SELECT, MAINTAIN ON TABLE
  public.payment_outbox_pending,
  public.payment_outbox_attempts,
  public.participant_outbox_sequences
  TO symphony_control;
GRANT SELECT ON TABLE public.schema_migrations TO symphony_control;

-- ------------------------------------------------------------
-- 6) Read plane
-- ------------------------------------------------------------
GRANT SELECT ON TABLE
  public.payment_outbox_pending,
  public.payment_outbox_attempts,
  public.schema_migrations
  TO symphony_readonly, symphony_auditor;
