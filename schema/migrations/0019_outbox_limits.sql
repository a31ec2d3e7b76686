-- 0019_outbox_limits.sql
-- Operator limits that no runtime session can change, and the append-only audit of every
-- change made to them (and, later, to every other operator control).
--
-- Why: until now the retry ceiling came from the GUC symphony.outbox_retry_ceiling, which
-- any executor session could SET for itself ('1' failed another worker's item at attempt 1,
-- '1000' retried for ever), and lease length, retry delay and payload size had no bound in
-- the database at all. The limits now live in one row of one table that only the owner
-- can write directly; symphony_control changes them through set_outbox_limit(), which
-- checks the range (22023) and records who, when and why in outbox_control_audit.
-- The GUC is no longer read by anything (0021 redefines outbox_retry_ceiling()).

-- ============================================================
-- 1) Control audit: who changed which operator control, when and why (append-only)
-- ============================================================
CREATE TABLE public.outbox_control_audit (
  audit_id    UUID PRIMARY KEY DEFAULT uuidv7(),
  -- e.g. 'set_limit'; later migrations add pause/resume/redrive/rail settings.
  action      TEXT NOT NULL,
  -- What the action applies to, e.g. 'retry_ceiling', a rail type or a participant id.
  target      TEXT NOT NULL,
  details     JSONB NOT NULL DEFAULT '{}'::jsonb,
  reason      TEXT NOT NULL,
  -- Always session_user (the login, never the role it acts as) and server time: set by the
  -- SECURITY DEFINER functions that write this table, never by their callers.
  actor       TEXT NOT NULL,
  recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  CONSTRAINT ck_control_audit_reason CHECK (length(btrim(reason)) BETWEEN 1 AND 1000),
  CONSTRAINT ck_control_audit_action CHECK (action ~ '^[a-z_]{1,64}$'),
  CONSTRAINT ck_control_audit_target CHECK (length(target) BETWEEN 1 AND 256)
);

COMMENT ON TABLE public.outbox_control_audit IS
  'Append-only audit of operator controls (limits, and later pauses, re-drives, rail settings). Written only by SECURITY DEFINER functions; UPDATE, DELETE and TRUNCATE raise P0001.';

-- One trigger function for every append-only table from here on: the invariant id that the
-- error names is the trigger's argument.
CREATE FUNCTION public.deny_append_only_mutation()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  RAISE EXCEPTION '%: % is append-only; % is not allowed', TG_ARGV[0], TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'P0001',
          HINT = 'Record a new row instead of changing or removing history.';
END;
$$;

CREATE TRIGGER trg_control_audit_deny_update_delete
BEFORE UPDATE OR DELETE ON public.outbox_control_audit
FOR EACH ROW EXECUTE FUNCTION public.deny_append_only_mutation('INV-CONTROL-AUDIT-APPEND-ONLY');

CREATE TRIGGER trg_control_audit_deny_truncate
BEFORE TRUNCATE ON public.outbox_control_audit
FOR EACH STATEMENT EXECUTE FUNCTION public.deny_append_only_mutation('INV-CONTROL-AUDIT-APPEND-ONLY');

-- ============================================================
-- 2) Limits: exactly one row
-- ============================================================
CREATE TABLE public.outbox_limits (
  singleton                BOOLEAN PRIMARY KEY DEFAULT true,
  -- The highest attempt number that may still be RETRYABLE (was the GUC's 20).
  retry_ceiling            INT NOT NULL DEFAULT 20,
  -- Longest lease a claim may ask for, and longest delay a RETRYABLE outcome may ask for.
  max_lease_seconds        INT NOT NULL DEFAULT 3600,
  max_retry_delay_seconds  INT NOT NULL DEFAULT 86400,
  -- Payload bounds checked at enqueue: size of its JSON text, and nesting depth.
  max_payload_bytes        INT NOT NULL DEFAULT 65536,
  max_payload_depth        INT NOT NULL DEFAULT 32,
  updated_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
  CONSTRAINT ck_limits_singleton CHECK (singleton),
  CONSTRAINT ck_limits_retry_ceiling CHECK (retry_ceiling BETWEEN 1 AND 1000),
  CONSTRAINT ck_limits_max_lease CHECK (max_lease_seconds BETWEEN 1 AND 86400),
  CONSTRAINT ck_limits_max_retry_delay CHECK (max_retry_delay_seconds BETWEEN 1 AND 604800),
  CONSTRAINT ck_limits_max_payload_bytes CHECK (max_payload_bytes BETWEEN 2 AND 16777216),
  CONSTRAINT ck_limits_max_payload_depth CHECK (max_payload_depth BETWEEN 1 AND 256)
);

INSERT INTO public.outbox_limits DEFAULT VALUES;

COMMENT ON TABLE public.outbox_limits IS
  'The operator limits (one row). Changed by the owner, or by symphony_control through set_outbox_limit() (audited); never by a session setting.';

CREATE TRIGGER trg_limits_touch_updated_at
BEFORE UPDATE ON public.outbox_limits
FOR EACH ROW EXECUTE FUNCTION public.outbox_touch_updated_at();

-- The row must never disappear: every function reads it.
CREATE TRIGGER trg_limits_deny_delete
BEFORE DELETE ON public.outbox_limits
FOR EACH ROW EXECUTE FUNCTION public.deny_append_only_mutation('INV-LIMITS-ALWAYS-ONE-ROW');

CREATE TRIGGER trg_limits_deny_truncate
BEFORE TRUNCATE ON public.outbox_limits
FOR EACH STATEMENT EXECUTE FUNCTION public.deny_append_only_mutation('INV-LIMITS-ALWAYS-ONE-ROW');

-- ============================================================
-- 3) Reading and changing the limits
-- ============================================================
CREATE FUNCTION public.outbox_current_limits()
RETURNS TABLE (
  retry_ceiling           int,
  max_lease_seconds       int,
  max_retry_delay_seconds int,
  max_payload_bytes       int,
  max_payload_depth       int,
  updated_at              timestamptz
)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT l.retry_ceiling, l.max_lease_seconds, l.max_retry_delay_seconds,
         l.max_payload_bytes, l.max_payload_depth, l.updated_at
    FROM public.outbox_limits l;
$$;

-- p_name is a column of outbox_limits; the range is checked here (22023, naming the limit,
-- the value and the range) before the table's CHECK would refuse it less clearly.
CREATE FUNCTION public.set_outbox_limit(p_name text, p_value int, p_reason text)
RETURNS TABLE (name text, old_value int, new_value int)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
  v_min int;
  v_max int;
  v_old int;
BEGIN
  SELECT r.lo, r.hi INTO v_min, v_max
    FROM (VALUES ('retry_ceiling', 1, 1000),
                 ('max_lease_seconds', 1, 86400),
                 ('max_retry_delay_seconds', 1, 604800),
                 ('max_payload_bytes', 2, 16777216),
                 ('max_payload_depth', 1, 256)) AS r(name, lo, hi)
   WHERE r.name = p_name;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'set_outbox_limit: unknown limit "%"', left(p_name, 64)
      USING ERRCODE = '22023',
            HINT = 'One of retry_ceiling, max_lease_seconds, max_retry_delay_seconds, max_payload_bytes, max_payload_depth.';
  END IF;
  IF p_value IS NULL OR p_value < v_min OR p_value > v_max THEN
    RAISE EXCEPTION 'set_outbox_limit: % must be between % and %, got %', p_name, v_min, v_max, p_value
      USING ERRCODE = '22023';
  END IF;
  IF p_reason IS NULL OR length(btrim(p_reason)) NOT BETWEEN 1 AND 1000 THEN
    RAISE EXCEPTION 'set_outbox_limit: a reason of 1 to 1000 characters is required'
      USING ERRCODE = '22023';
  END IF;

  EXECUTE format('SELECT %I FROM public.outbox_limits FOR UPDATE', p_name) INTO v_old;
  EXECUTE format('UPDATE public.outbox_limits SET %I = $1', p_name) USING p_value;

  INSERT INTO public.outbox_control_audit (action, target, details, reason, actor)
  VALUES ('set_limit', p_name, jsonb_build_object('old', v_old, 'new', p_value), btrim(p_reason), session_user);

  RETURN QUERY SELECT p_name, v_old, p_value;
END;
$$;

REVOKE ALL ON TABLE public.outbox_limits, public.outbox_control_audit FROM PUBLIC;
REVOKE ALL ON FUNCTION public.outbox_current_limits() FROM PUBLIC;
REVOKE ALL ON FUNCTION public.set_outbox_limit(text, int, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.deny_append_only_mutation() FROM PUBLIC;

GRANT SELECT ON TABLE public.outbox_limits, public.outbox_control_audit
  TO symphony_control, symphony_readonly, symphony_auditor;
GRANT EXECUTE ON FUNCTION public.outbox_current_limits()
  TO symphony_control, symphony_executor, symphony_ingest, symphony_readonly, symphony_auditor;
GRANT EXECUTE ON FUNCTION public.set_outbox_limit(text, int, text) TO symphony_control;
