-- 0001_init.sql
-- The outbox core: PostgreSQL 18 check, attempt-state enum, the per-participant sequence
-- allocator, the pending work queue (with its lease) and the append-only attempt ledger.
-- Functions live in 0002; privileges live in 0004 (no grants here).
--
-- Every function in these migrations says `SET search_path = pg_catalog, public, pg_temp`.
-- pg_temp must be named, and last: a search_path that omits it searches the session's
-- temporary schema FIRST for type names, so any role with TEMP on the database could shadow
-- `text` or `uuid` with a domain whose CHECK runs its own code as the function's owner.

-- ============================================================
-- 0) Environment: PostgreSQL 18 or newer (uuidv7() is a PG18 built-in, used as id default)
-- ============================================================
-- A function rather than an inline DO block so the refusal itself can be tested
-- (call it with a threshold above the running server's version).
CREATE FUNCTION public.assert_server_version(p_min_version_num int)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  v_version_num int := current_setting('server_version_num')::int;
BEGIN
  IF v_version_num < p_min_version_num THEN
    RAISE EXCEPTION 'Symphony requires a PostgreSQL server with server_version_num >= %, but this server is % (server_version_num %)',
      p_min_version_num, current_setting('server_version'), v_version_num
      USING ERRCODE = 'P7001',
            HINT = 'Symphony needs PostgreSQL 18 or newer (uuidv7(), built-in since 18); run the migrations against such a server.';
  END IF;
END;
$$;

COMMENT ON FUNCTION public.assert_server_version(int) IS
  'Raises P7001 unless server_version_num >= the argument. 0001_init calls it with 180000.';

SELECT public.assert_server_version(180000);

-- ============================================================
-- 1) Attempt states
-- ============================================================
-- DISPATCHING is historical only: no attempt row is ever written with it (CHECK below);
-- an in-flight item is represented by the lease on its pending row instead.
CREATE TYPE public.outbox_attempt_state AS ENUM (
  'DISPATCHING',
  'DISPATCHED',
  'RETRYABLE',
  'FAILED',
  'ZOMBIE_REQUEUE'
);

-- ============================================================
-- 2) Per-participant sequence allocator
-- ============================================================
-- next_sequence_id is the NEXT value to hand out; allocation is an upsert on this row,
-- whose row lock serialises concurrent enqueues of one participant (gap-free 1..N).
CREATE TABLE public.participant_outbox_sequences (
  participant_id   TEXT PRIMARY KEY,
  next_sequence_id BIGINT NOT NULL,
  updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
  CONSTRAINT ck_sequences_next_positive CHECK (next_sequence_id >= 1)
);

-- ============================================================
-- 3) Pending work queue (one row per undelivered item; deleted on its terminal outcome)
-- ============================================================
CREATE TABLE public.payment_outbox_pending (
  outbox_id        UUID PRIMARY KEY DEFAULT uuidv7(),

  instruction_id   TEXT NOT NULL,
  participant_id   TEXT NOT NULL,
  sequence_id      BIGINT NOT NULL,

  idempotency_key  TEXT NOT NULL,
  rail_type        TEXT NOT NULL,
  payload          JSONB NOT NULL,

  attempt_count    INT NOT NULL DEFAULT 0,
  next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),

  -- The lease: who holds the item, the token that fences its completion, and until when.
  claimed_by       TEXT,
  lease_token      UUID,
  lease_expires_at TIMESTAMPTZ,

  created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),

  CONSTRAINT ux_pending_idempotency UNIQUE (instruction_id, idempotency_key),
  CONSTRAINT ux_pending_participant_sequence UNIQUE (participant_id, sequence_id),
  CONSTRAINT ck_pending_payload_is_object CHECK (jsonb_typeof(payload) = 'object'),
  CONSTRAINT ck_pending_attempt_count_non_negative CHECK (attempt_count >= 0),
  -- A half-set lease could be neither completed (no token) nor repaired (no expiry).
  CONSTRAINT ck_pending_lease_all_or_nothing CHECK (
    (claimed_by IS NULL AND lease_token IS NULL AND lease_expires_at IS NULL)
    OR (claimed_by IS NOT NULL AND lease_token IS NOT NULL AND lease_expires_at IS NOT NULL)
  )
);

COMMENT ON TABLE public.payment_outbox_pending IS
  'Outbox work queue. Written only through enqueue/claim/complete/repair functions; a row is deleted when its item reaches a terminal attempt (DISPATCHED or FAILED).';

CREATE FUNCTION public.outbox_touch_updated_at()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END;
$$;

CREATE TRIGGER trg_pending_touch_updated_at
BEFORE UPDATE ON public.payment_outbox_pending
FOR EACH ROW EXECUTE FUNCTION public.outbox_touch_updated_at();

-- ============================================================
-- 4) Attempt ledger (append-only; the status history and the terminal truth)
-- ============================================================
-- No foreign key to payment_outbox_pending: pending rows are deleted on terminal
-- outcomes while their attempts stay forever.
CREATE TABLE public.payment_outbox_attempts (
  attempt_id       UUID PRIMARY KEY DEFAULT uuidv7(),

  outbox_id        UUID NOT NULL,
  instruction_id   TEXT NOT NULL,
  participant_id   TEXT NOT NULL,
  sequence_id      BIGINT NOT NULL,
  idempotency_key  TEXT NOT NULL,
  rail_type        TEXT NOT NULL,
  payload          JSONB NOT NULL,

  attempt_no       INT NOT NULL,
  state            public.outbox_attempt_state NOT NULL,

  claimed_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
  completed_at     TIMESTAMPTZ,

  rail_reference   TEXT,
  rail_code        TEXT,
  error_code       TEXT,
  error_message    TEXT,
  latency_ms       INT,

  worker_id        TEXT,
  created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),

  CONSTRAINT ux_attempt_unique_per_outbox UNIQUE (outbox_id, attempt_no),
  CONSTRAINT ck_attempts_payload_is_object CHECK (jsonb_typeof(payload) = 'object'),
  CONSTRAINT ck_attempts_attempt_no_positive CHECK (attempt_no >= 1),
  CONSTRAINT ck_attempts_state_not_dispatching CHECK (state <> 'DISPATCHING'),
  CONSTRAINT ck_attempts_latency_non_negative CHECK (latency_ms IS NULL OR latency_ms >= 0)
);

-- enqueue_payment_outbox looks up a finished item by (instruction_id, idempotency_key)
-- once its pending row is gone; without this index that lookup scans the whole ledger.
CREATE INDEX ix_attempts_instruction_idempotency
  ON public.payment_outbox_attempts (instruction_id, idempotency_key);

COMMENT ON TABLE public.payment_outbox_attempts IS
  'Append-only outbox attempt ledger (authoritative status history). UPDATE, DELETE and TRUNCATE raise P0001.';

CREATE FUNCTION public.deny_outbox_attempts_mutation()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  RAISE EXCEPTION 'INV-ATTEMPTS-APPEND-ONLY: payment_outbox_attempts is append-only; % is not allowed', TG_OP
    USING ERRCODE = 'P0001',
          HINT = 'Record a new attempt row instead of changing or removing history.';
END;
$$;

CREATE TRIGGER trg_attempts_deny_update_delete
BEFORE UPDATE OR DELETE ON public.payment_outbox_attempts
FOR EACH ROW EXECUTE FUNCTION public.deny_outbox_attempts_mutation();

-- TRUNCATE bypasses row triggers, so it needs its own statement-level trigger.
CREATE TRIGGER trg_attempts_deny_truncate
BEFORE TRUNCATE ON public.payment_outbox_attempts
FOR EACH STATEMENT EXECUTE FUNCTION public.deny_outbox_attempts_mutation();
