-- 0023_outbox_rail_settings.sql
-- Operator control plane, part 2: per-rail settings every worker of the fleet obeys —
-- a rate limit, ordered delivery per participant, and a circuit breaker — and the shared
-- state they need. 0024 makes claim and completion read them.
--
-- Why: each replica dispatched as fast as its slots allowed and every item retried on its
-- own backoff, so N replicas hammered a bank that was down and every item climbed toward
-- the retry ceiling while it was away; and claims ordered by due time, so a participant's
-- sequence 5 could reach the rail before 3 and 4.
--
--   * max_per_second: a token bucket per rail (capacity max_per_second, refilled
--     continuously), taken from inside the claim under the bucket row's lock, so the whole
--     fleet together claims at most max_per_second items per second on average, in bursts
--     of at most max_per_second.
--   * ordered: a claim takes, per participant, only the lowest sequence_id queued on that
--     rail, and nothing of a participant while one of its items on that rail is leased. A
--     head that ends FAILED blocks its participant on that rail (outbox_ordered_blocks)
--     until it is re-driven: later items never overtake a failed payment.
--   * breaker_threshold consecutive transport failures (TIMEOUT, NETWORK_ERROR, HTTP_5xx)
--     open the rail for breaker_cooldown_seconds; while open no worker claims its items, so
--     their attempt counts do not grow. Then exactly one half-open probe is claimed,
--     fleet-wide; its success closes the breaker, its failure re-opens it for twice the
--     previous cool-down, up to breaker_max_cooldown_seconds.
--
-- Changed only by symphony_control (or the owner) through set_rail_settings(), audited in
-- outbox_control_audit. Refusals: 22023 for an out-of-range setting.

CREATE TABLE public.outbox_rail_settings (
  rail_type                    TEXT PRIMARY KEY,
  -- NULL: no rate limit.
  max_per_second               INT,
  ordered                      BOOLEAN NOT NULL DEFAULT false,
  -- NULL: no circuit breaker.
  breaker_threshold            INT,
  breaker_cooldown_seconds     INT NOT NULL DEFAULT 30,
  breaker_max_cooldown_seconds INT NOT NULL DEFAULT 600,
  updated_by                   TEXT NOT NULL,
  updated_at                   TIMESTAMPTZ NOT NULL DEFAULT now(),
  CONSTRAINT ck_rail_settings_rail_type CHECK (rail_type ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$'),
  CONSTRAINT ck_rail_settings_max_per_second CHECK (max_per_second BETWEEN 1 AND 100000),
  CONSTRAINT ck_rail_settings_breaker_threshold CHECK (breaker_threshold BETWEEN 1 AND 1000),
  CONSTRAINT ck_rail_settings_cooldown CHECK (breaker_cooldown_seconds BETWEEN 1 AND 86400),
  CONSTRAINT ck_rail_settings_max_cooldown CHECK (
    breaker_max_cooldown_seconds BETWEEN breaker_cooldown_seconds AND 86400)
);

COMMENT ON TABLE public.outbox_rail_settings IS
  'Per-rail controls (rate limit, ordered delivery, circuit breaker). Written only by set_rail_settings() (audited).';

-- The fleet's shared runtime state of a configured rail: written by claim and completion.
CREATE TABLE public.outbox_rail_state (
  rail_type            TEXT PRIMARY KEY REFERENCES public.outbox_rail_settings (rail_type) ON DELETE CASCADE,
  -- Token bucket.
  tokens               DOUBLE PRECISION NOT NULL DEFAULT 0,
  refilled_at          TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
  -- Circuit breaker.
  breaker_state        TEXT NOT NULL DEFAULT 'closed',
  consecutive_failures INT NOT NULL DEFAULT 0,
  opened_at            TIMESTAMPTZ,
  open_until           TIMESTAMPTZ,
  cooldown_seconds     INT,
  -- The half-open probe claimed last (only its outcome closes or re-opens the breaker).
  probe_outbox_id      UUID,
  CONSTRAINT ck_rail_state_breaker CHECK (breaker_state IN ('closed', 'open', 'half_open')),
  CONSTRAINT ck_rail_state_open_has_until CHECK (breaker_state = 'closed' OR open_until IS NOT NULL)
);

-- A participant whose head item ended FAILED on an ordered rail waits here until that item
-- is re-driven (redrive_outbox_item deletes the row) or the rail is made unordered.
CREATE TABLE public.outbox_ordered_blocks (
  outbox_id      UUID PRIMARY KEY REFERENCES public.payment_outbox_items (outbox_id),
  rail_type      TEXT NOT NULL,
  participant_id TEXT NOT NULL,
  sequence_id    BIGINT NOT NULL,
  blocked_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX ix_ordered_blocks_rail_participant
  ON public.outbox_ordered_blocks (rail_type, participant_id);

-- ------------------------------------------------------------
-- set_rail_settings: NULL leaves a setting as it is; max_per_second 0 and
-- breaker_threshold 0 remove the limit / the breaker. Audited with old and new values.
-- ------------------------------------------------------------
CREATE FUNCTION public.set_rail_settings(
  p_rail_type                    text,
  p_max_per_second               int,
  p_ordered                      boolean,
  p_breaker_threshold            int,
  p_breaker_cooldown_seconds     int,
  p_breaker_max_cooldown_seconds int,
  p_reason                       text
)
RETURNS SETOF public.outbox_rail_settings
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  v_old public.outbox_rail_settings;
  v_new public.outbox_rail_settings;
BEGIN
  PERFORM public.outbox_assert_reason('set_rail_settings', p_reason);
  IF p_rail_type IS NULL OR p_rail_type !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$' THEN
    RAISE EXCEPTION 'set_rail_settings: the rail must be a rail type (1-64 letters, digits, "_", ".", ":" or "-", starting with a letter or digit)'
      USING ERRCODE = '22023';
  END IF;
  IF p_max_per_second IS NOT NULL AND p_max_per_second NOT BETWEEN 0 AND 100000 THEN
    RAISE EXCEPTION 'set_rail_settings: max_per_second must be between 1 and 100000 (0 removes the limit), got %', p_max_per_second
      USING ERRCODE = '22023';
  END IF;
  IF p_breaker_threshold IS NOT NULL AND p_breaker_threshold NOT BETWEEN 0 AND 1000 THEN
    RAISE EXCEPTION 'set_rail_settings: breaker_threshold must be between 1 and 1000 (0 removes the breaker), got %', p_breaker_threshold
      USING ERRCODE = '22023';
  END IF;
  IF p_breaker_cooldown_seconds IS NOT NULL AND p_breaker_cooldown_seconds NOT BETWEEN 1 AND 86400 THEN
    RAISE EXCEPTION 'set_rail_settings: breaker_cooldown_seconds must be between 1 and 86400, got %', p_breaker_cooldown_seconds
      USING ERRCODE = '22023';
  END IF;
  IF p_breaker_max_cooldown_seconds IS NOT NULL AND p_breaker_max_cooldown_seconds NOT BETWEEN 1 AND 86400 THEN
    RAISE EXCEPTION 'set_rail_settings: breaker_max_cooldown_seconds must be between 1 and 86400, got %', p_breaker_max_cooldown_seconds
      USING ERRCODE = '22023';
  END IF;

  SELECT s.* INTO v_old FROM public.outbox_rail_settings s WHERE s.rail_type = p_rail_type FOR UPDATE;

  v_new.rail_type := p_rail_type;
  v_new.max_per_second := CASE WHEN p_max_per_second IS NULL THEN v_old.max_per_second
                               ELSE NULLIF(p_max_per_second, 0) END;
  v_new.ordered := COALESCE(p_ordered, v_old.ordered, false);
  v_new.breaker_threshold := CASE WHEN p_breaker_threshold IS NULL THEN v_old.breaker_threshold
                                  ELSE NULLIF(p_breaker_threshold, 0) END;
  v_new.breaker_cooldown_seconds := COALESCE(p_breaker_cooldown_seconds, v_old.breaker_cooldown_seconds, 30);
  v_new.breaker_max_cooldown_seconds := COALESCE(p_breaker_max_cooldown_seconds, v_old.breaker_max_cooldown_seconds,
                                                 GREATEST(600, v_new.breaker_cooldown_seconds));
  IF v_new.breaker_max_cooldown_seconds < v_new.breaker_cooldown_seconds THEN
    RAISE EXCEPTION 'set_rail_settings: breaker_max_cooldown_seconds (%) must be at least breaker_cooldown_seconds (%)',
      v_new.breaker_max_cooldown_seconds, v_new.breaker_cooldown_seconds
      USING ERRCODE = '22023';
  END IF;

  INSERT INTO public.outbox_rail_settings AS s (
    rail_type, max_per_second, ordered, breaker_threshold, breaker_cooldown_seconds,
    breaker_max_cooldown_seconds, updated_by, updated_at
  )
  VALUES (v_new.rail_type, v_new.max_per_second, v_new.ordered, v_new.breaker_threshold,
          v_new.breaker_cooldown_seconds, v_new.breaker_max_cooldown_seconds, session_user, now())
  ON CONFLICT (rail_type) DO UPDATE
    SET max_per_second = excluded.max_per_second,
        ordered = excluded.ordered,
        breaker_threshold = excluded.breaker_threshold,
        breaker_cooldown_seconds = excluded.breaker_cooldown_seconds,
        breaker_max_cooldown_seconds = excluded.breaker_max_cooldown_seconds,
        updated_by = excluded.updated_by,
        updated_at = excluded.updated_at
  RETURNING s.* INTO v_new;

  -- A new limit starts with a full bucket; a removed breaker forgets its state.
  INSERT INTO public.outbox_rail_state AS st (rail_type, tokens)
  VALUES (p_rail_type, COALESCE(v_new.max_per_second, 0))
  ON CONFLICT (rail_type) DO NOTHING;
  IF v_new.breaker_threshold IS NULL THEN
    UPDATE public.outbox_rail_state st
       SET breaker_state = 'closed', consecutive_failures = 0, opened_at = NULL,
           open_until = NULL, cooldown_seconds = NULL, probe_outbox_id = NULL
     WHERE st.rail_type = p_rail_type AND (st.breaker_state <> 'closed' OR st.consecutive_failures <> 0);
  END IF;
  -- Unordered, nothing waits behind a failed head any more.
  IF NOT v_new.ordered THEN
    DELETE FROM public.outbox_ordered_blocks b WHERE b.rail_type = p_rail_type;
  END IF;

  INSERT INTO public.outbox_control_audit (action, target, details, reason, actor)
  VALUES ('set_rail', p_rail_type,
          jsonb_build_object('old', CASE WHEN v_old.rail_type IS NULL THEN NULL
                                         ELSE to_jsonb(v_old) - 'updated_by' - 'updated_at' END,
                             'new', to_jsonb(v_new) - 'updated_by' - 'updated_at'),
          btrim(p_reason), session_user);
  PERFORM pg_notify('outbox_pending', '');

  RETURN NEXT v_new;
END;
$$;

-- ------------------------------------------------------------
-- What a configured rail looks like now (rail show, metrics).
-- ------------------------------------------------------------
CREATE FUNCTION public.outbox_rail_overview()
RETURNS TABLE (
  rail_type                    text,
  max_per_second               int,
  ordered                      boolean,
  breaker_threshold            int,
  breaker_cooldown_seconds     int,
  breaker_max_cooldown_seconds int,
  -- 'closed', 'open' (cooling down), or 'half_open' (a probe may go or is out)
  breaker_state                text,
  consecutive_failures         int,
  open_until                   timestamptz,
  cooldown_seconds             int,
  blocked_participants         bigint,
  updated_by                   text,
  updated_at                   timestamptz
)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT s.rail_type, s.max_per_second, s.ordered, s.breaker_threshold, s.breaker_cooldown_seconds,
         s.breaker_max_cooldown_seconds,
         CASE WHEN st.breaker_state = 'open' AND st.open_until <= now() THEN 'half_open'
              ELSE COALESCE(st.breaker_state, 'closed') END,
         COALESCE(st.consecutive_failures, 0), st.open_until, st.cooldown_seconds,
         (SELECT count(DISTINCT b.participant_id) FROM public.outbox_ordered_blocks b WHERE b.rail_type = s.rail_type),
         s.updated_by, s.updated_at
    FROM public.outbox_rail_settings s
    LEFT JOIN public.outbox_rail_state st ON st.rail_type = s.rail_type
   ORDER BY s.rail_type;
$$;

-- ------------------------------------------------------------
-- What an outcome means for its rail's controls (called by completion for configured
-- rails only): an ordered rail's FAILED item blocks its participant; a breaker counts
-- consecutive transport failures, and only the half-open probe's outcome closes or
-- re-opens it.
-- ------------------------------------------------------------
CREATE FUNCTION public.outbox_rail_outcome(
  p_rail_type      text,
  p_outbox_id      uuid,
  p_participant_id text,
  p_sequence_id    bigint,
  p_state          public.outbox_attempt_state,
  p_error_code     text
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  v_set       public.outbox_rail_settings;
  v_state     public.outbox_rail_state;
  v_transport boolean := p_state <> 'DISPATCHED'
                         AND COALESCE(p_error_code, '') ~ '^(TIMEOUT|NETWORK_ERROR|HTTP_5[0-9][0-9])$';
  v_failures  int;
  v_cooldown  int;
BEGIN
  SELECT s.* INTO v_set FROM public.outbox_rail_settings s WHERE s.rail_type = p_rail_type;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  IF v_set.ordered AND p_state = 'FAILED' THEN
    INSERT INTO public.outbox_ordered_blocks (outbox_id, rail_type, participant_id, sequence_id)
    VALUES (p_outbox_id, p_rail_type, p_participant_id, p_sequence_id)
    ON CONFLICT (outbox_id) DO NOTHING;
  END IF;
  -- A head that left the queue (or went back to wait for its retry) lets its participant's
  -- next item go: wake the workers now instead of at their next poll (one NOTIFY per
  -- transaction, however many outcomes).
  IF v_set.ordered THEN
    PERFORM pg_notify('outbox_pending', '');
  END IF;
  IF v_set.breaker_threshold IS NULL THEN
    RETURN;
  END IF;

  SELECT st.* INTO v_state FROM public.outbox_rail_state st WHERE st.rail_type = p_rail_type;
  IF v_state.breaker_state = 'closed' THEN
    IF NOT v_transport THEN
      -- The rail answered: the run of failures is over (written only when there was one).
      IF v_state.consecutive_failures > 0 THEN
        UPDATE public.outbox_rail_state st SET consecutive_failures = 0
         WHERE st.rail_type = p_rail_type AND st.breaker_state = 'closed';
      END IF;
      RETURN;
    END IF;
    UPDATE public.outbox_rail_state st
       SET consecutive_failures = st.consecutive_failures + 1
     WHERE st.rail_type = p_rail_type AND st.breaker_state = 'closed'
    RETURNING st.consecutive_failures INTO v_failures;
    IF v_failures >= v_set.breaker_threshold THEN
      UPDATE public.outbox_rail_state st
         SET breaker_state = 'open', opened_at = now(),
             cooldown_seconds = v_set.breaker_cooldown_seconds,
             open_until = now() + make_interval(secs => v_set.breaker_cooldown_seconds),
             probe_outbox_id = NULL
       WHERE st.rail_type = p_rail_type AND st.breaker_state = 'closed';
    END IF;
    RETURN;
  END IF;

  -- Open or half-open: outcomes of dispatches that started before it opened change nothing.
  IF v_state.probe_outbox_id IS DISTINCT FROM p_outbox_id THEN
    RETURN;
  END IF;
  IF v_transport THEN
    v_cooldown := LEAST(v_set.breaker_max_cooldown_seconds,
                        GREATEST(v_set.breaker_cooldown_seconds, COALESCE(v_state.cooldown_seconds, 0) * 2));
    UPDATE public.outbox_rail_state st
       SET breaker_state = 'open', opened_at = now(), cooldown_seconds = v_cooldown,
           open_until = now() + make_interval(secs => v_cooldown), probe_outbox_id = NULL
     WHERE st.rail_type = p_rail_type AND st.probe_outbox_id = p_outbox_id;
  ELSE
    UPDATE public.outbox_rail_state st
       SET breaker_state = 'closed', consecutive_failures = 0, opened_at = NULL,
           open_until = NULL, cooldown_seconds = NULL, probe_outbox_id = NULL
     WHERE st.rail_type = p_rail_type AND st.probe_outbox_id = p_outbox_id;
    PERFORM pg_notify('outbox_pending', '');
  END IF;
END;
$$;

-- A re-drive lifts the block its item put on its participant (0022's function, extended).
CREATE FUNCTION public.outbox_unblock_on_redrive()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  DELETE FROM public.outbox_ordered_blocks b WHERE b.outbox_id = NEW.outbox_id;
  RETURN NULL;
END;
$$;

CREATE TRIGGER trg_redrives_unblock
AFTER INSERT ON public.outbox_redrives
FOR EACH ROW EXECUTE FUNCTION public.outbox_unblock_on_redrive();

REVOKE ALL ON TABLE public.outbox_rail_settings, public.outbox_rail_state, public.outbox_ordered_blocks FROM PUBLIC;
REVOKE ALL ON FUNCTION
  public.set_rail_settings(text, int, boolean, int, int, int, text),
  public.outbox_rail_overview(),
  public.outbox_rail_outcome(text, uuid, text, bigint, public.outbox_attempt_state, text),
  public.outbox_unblock_on_redrive()
  FROM PUBLIC;
GRANT SELECT ON TABLE public.outbox_rail_settings, public.outbox_rail_state, public.outbox_ordered_blocks
  TO symphony_control, symphony_readonly, symphony_auditor;
GRANT EXECUTE ON FUNCTION public.set_rail_settings(text, int, boolean, int, int, int, text) TO symphony_control;
GRANT EXECUTE ON FUNCTION public.outbox_rail_overview()
  TO symphony_control, symphony_executor, symphony_readonly, symphony_auditor;
