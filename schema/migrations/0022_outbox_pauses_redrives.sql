-- 0022_outbox_pauses_redrives.sql
-- Operator control plane, part 1: kill switches (pauses) and re-drive of FAILED items.
--
-- Why:
--   * There was no way to stop dispatching to a misbehaving bank short of scaling every
--     replica to zero. A pause row (all, one rail type, or one participant) now stops every
--     worker of the fleet from claiming the items it covers, from its next claim on
--     (claim_outbox_batch is redefined in 0023 to read it); in-flight items finish.
--   * A FAILED item could only be re-sent under a new idempotency key, which risks paying
--     twice. A re-drive gives the same item (same key, same item record) a new queue row;
--     the ledger keeps the FAILED attempt and appends every new one.
--
-- The invariant "at most one terminal attempt per item" (0008) becomes:
--   * at most one terminal attempt per (item, drive): drive 1 is the item's first life and
--     each re-drive starts the next; an attempt's drive is set by a trigger from the
--     re-drive record, never by the caller;
--   * at most one DISPATCHED attempt per item, ever: a re-drive of a dispatched item is
--     refused (P7501), and the index refuses even the owner's direct write (23505).
-- A re-drive is recorded once per FAILED attempt (UNIQUE failed_attempt_id): re-driving
-- the same failure again does nothing and says so.
--
-- Every pause, resume and re-drive is made by symphony_control (or the owner) through the
-- SECURITY DEFINER functions below and recorded in outbox_control_audit (0019) with
-- session_user and server time.
--
-- Control refusals:
--   P7501  re-drive of an item that is not FAILED (queued, or DISPATCHED: never pay twice)
--   P7502  re-drive of an outbox item that does not exist
--   22023  a bad scope, target or reason

-- ============================================================
-- 1) Pauses (kill switches)
-- ============================================================
CREATE TABLE public.outbox_pauses (
  -- 'all' (target '*'), 'rail' (a rail type) or 'participant' (a participant id).
  scope     TEXT NOT NULL,
  target    TEXT NOT NULL,
  reason    TEXT NOT NULL,
  paused_by TEXT NOT NULL,
  paused_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (scope, target),
  CONSTRAINT ck_pauses_scope CHECK (scope IN ('all', 'rail', 'participant')),
  CONSTRAINT ck_pauses_all_target CHECK ((scope = 'all') = (target = '*')),
  CONSTRAINT ck_pauses_target CHECK (length(target) BETWEEN 1 AND 128),
  CONSTRAINT ck_pauses_reason CHECK (length(btrim(reason)) BETWEEN 1 AND 1000)
);

COMMENT ON TABLE public.outbox_pauses IS
  'Active kill switches: while a row covers an item, no worker claims it. Written only by pause_dispatch()/resume_dispatch(); history is in outbox_control_audit.';

-- The target as stored, or the refusal (22023) naming what is wrong with it.
CREATE FUNCTION public.outbox_pause_target(p_function text, p_scope text, p_target text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  IF p_scope = 'all' THEN
    IF p_target IS NOT NULL AND p_target <> '*' THEN
      RAISE EXCEPTION '%: scope all takes no target', p_function USING ERRCODE = '22023';
    END IF;
    RETURN '*';
  ELSIF p_scope = 'rail' THEN
    IF p_target IS NULL OR p_target !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$' THEN
      RAISE EXCEPTION '%: a rail target must be a rail type (1-64 letters, digits, "_", ".", ":" or "-", starting with a letter or digit)', p_function
        USING ERRCODE = '22023';
    END IF;
    RETURN p_target;
  ELSIF p_scope = 'participant' THEN
    IF p_target IS NULL OR length(p_target) > 128
       OR p_target !~ '^[\x21-\x7E]([\x20-\x7E]*[\x21-\x7E])?$' THEN
      RAISE EXCEPTION '%: a participant target must be a participant id (1-128 printable ASCII characters, no leading or trailing space)', p_function
        USING ERRCODE = '22023';
    END IF;
    RETURN p_target;
  END IF;
  RAISE EXCEPTION '%: scope must be all, rail or participant, got %', p_function, left(COALESCE(p_scope, 'NULL'), 32)
    USING ERRCODE = '22023';
END;
$$;

CREATE FUNCTION public.outbox_assert_reason(p_function text, p_reason text)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  IF p_reason IS NULL OR length(btrim(p_reason)) NOT BETWEEN 1 AND 1000 THEN
    RAISE EXCEPTION '%: a reason of 1 to 1000 characters is required', p_function
      USING ERRCODE = '22023';
  END IF;
END;
$$;

-- Pauses dispatch for the scope. Pausing what is already paused changes nothing (changed
-- = false, no audit row) and returns the standing pause.
CREATE FUNCTION public.pause_dispatch(p_scope text, p_target text, p_reason text)
RETURNS TABLE (scope text, target text, changed boolean, reason text, paused_by text, paused_at timestamptz)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
  v_target text := public.outbox_pause_target('pause_dispatch', p_scope, p_target);
  v_row    public.outbox_pauses;
BEGIN
  PERFORM public.outbox_assert_reason('pause_dispatch', p_reason);

  INSERT INTO public.outbox_pauses AS x (scope, target, reason, paused_by)
  VALUES (p_scope, v_target, btrim(p_reason), session_user)
  ON CONFLICT ON CONSTRAINT outbox_pauses_pkey DO NOTHING
  RETURNING x.* INTO v_row;

  IF v_row.scope IS NOT NULL THEN
    INSERT INTO public.outbox_control_audit (action, target, details, reason, actor)
    VALUES ('pause', p_scope || ':' || v_target, jsonb_build_object('scope', p_scope, 'target', v_target),
            btrim(p_reason), session_user);
    RETURN QUERY SELECT v_row.scope, v_row.target, true, v_row.reason, v_row.paused_by, v_row.paused_at;
    RETURN;
  END IF;

  RETURN QUERY
  SELECT x.scope, x.target, false, x.reason, x.paused_by, x.paused_at
    FROM public.outbox_pauses x
   WHERE x.scope = p_scope AND x.target = v_target;
END;
$$;

-- Lifts a pause. Resuming what is not paused changes nothing (changed = false, no audit
-- row). Workers are woken (NOTIFY outbox_pending) so the items flow at once.
CREATE FUNCTION public.resume_dispatch(p_scope text, p_target text, p_reason text)
RETURNS TABLE (scope text, target text, changed boolean, paused_since timestamptz)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
  v_target text := public.outbox_pause_target('resume_dispatch', p_scope, p_target);
  v_row    public.outbox_pauses;
BEGIN
  PERFORM public.outbox_assert_reason('resume_dispatch', p_reason);

  DELETE FROM public.outbox_pauses x
   WHERE x.scope = p_scope AND x.target = v_target
  RETURNING x.* INTO v_row;

  IF v_row.scope IS NULL THEN
    RETURN QUERY SELECT p_scope, v_target, false, NULL::timestamptz;
    RETURN;
  END IF;

  INSERT INTO public.outbox_control_audit (action, target, details, reason, actor)
  VALUES ('resume', p_scope || ':' || v_target,
          jsonb_build_object('scope', p_scope, 'target', v_target, 'paused_at', v_row.paused_at,
                             'paused_by', v_row.paused_by, 'pause_reason', v_row.reason),
          btrim(p_reason), session_user);
  PERFORM pg_notify('outbox_pending', '');
  RETURN QUERY SELECT p_scope, v_target, true, v_row.paused_at;
END;
$$;

-- The active pauses, for status, metrics and `rail show` (every reader role).
CREATE FUNCTION public.outbox_active_pauses()
RETURNS TABLE (scope text, target text, reason text, paused_by text, paused_at timestamptz)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT x.scope, x.target, x.reason, x.paused_by, x.paused_at
    FROM public.outbox_pauses x
   ORDER BY array_position(ARRAY['all', 'rail', 'participant'], x.scope), x.target;
$$;

-- ============================================================
-- 2) Re-drives
-- ============================================================
CREATE TABLE public.outbox_redrives (
  redrive_id        UUID PRIMARY KEY DEFAULT uuidv7(),
  outbox_id         UUID NOT NULL REFERENCES public.payment_outbox_items (outbox_id),
  -- The FAILED attempt this re-drive answers: one re-drive per failure (INV-REDRIVE-ONCE).
  -- No foreign key: it would make TRUNCATE of the append-only ledger fail with 0A000
  -- before the ledger's own P0001 trigger speaks; redrive_outbox_item() takes the id from
  -- the ledger under the item's lock.
  failed_attempt_id UUID NOT NULL,
  -- The drive this re-drive starts (2 for the first re-drive).
  drive             INT NOT NULL,
  reason            TEXT NOT NULL,
  actor             TEXT NOT NULL,
  redriven_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
  CONSTRAINT ux_redrives_failed_attempt UNIQUE (failed_attempt_id),
  CONSTRAINT ux_redrives_item_drive UNIQUE (outbox_id, drive),
  CONSTRAINT ck_redrives_drive CHECK (drive >= 2),
  CONSTRAINT ck_redrives_reason CHECK (length(btrim(reason)) BETWEEN 1 AND 1000)
);

COMMENT ON TABLE public.outbox_redrives IS
  'One row per re-driven FAILED attempt (append-only): the item got a new queue row with the same key. Written only by redrive_outbox_item().';

CREATE TRIGGER trg_redrives_deny_update_delete
BEFORE UPDATE OR DELETE ON public.outbox_redrives
FOR EACH ROW EXECUTE FUNCTION public.deny_append_only_mutation('INV-REDRIVES-APPEND-ONLY');

CREATE TRIGGER trg_redrives_deny_truncate
BEFORE TRUNCATE ON public.outbox_redrives
FOR EACH STATEMENT EXECUTE FUNCTION public.deny_append_only_mutation('INV-REDRIVES-APPEND-ONLY');

-- ------------------------------------------------------------
-- Attempts carry their drive; the terminal uniqueness moves from the item to the drive.
-- ------------------------------------------------------------
-- Existing attempts all belong to drive 1 (nothing was ever re-driven): a constant default
-- adds the column without rewriting the ledger.
ALTER TABLE public.payment_outbox_attempts
  ADD COLUMN drive INT NOT NULL DEFAULT 1,
  ADD CONSTRAINT ck_attempts_drive_positive CHECK (drive >= 1);

-- The drive is a fact of the ledger, not of the caller: 1 + the item's re-drives so far.
CREATE FUNCTION public.outbox_attempt_set_drive()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  NEW.drive := 1 + (SELECT count(*) FROM public.outbox_redrives r WHERE r.outbox_id = NEW.outbox_id);
  RETURN NEW;
END;
$$;

CREATE TRIGGER trg_attempts_set_drive
BEFORE INSERT ON public.payment_outbox_attempts
FOR EACH ROW EXECUTE FUNCTION public.outbox_attempt_set_drive();

-- INV-ATTEMPTS-ONE-TERMINAL-PER-DRIVE and INV-ATTEMPTS-ONE-DISPATCHED replace
-- INV-ATTEMPTS-ONE-TERMINAL (0008). Built in this transaction: the ledger's existing rows
-- satisfy both (they had at most one terminal attempt per item).
CREATE UNIQUE INDEX ux_attempts_one_terminal_per_drive
  ON public.payment_outbox_attempts (outbox_id, drive)
  WHERE state IN ('DISPATCHED', 'FAILED');

CREATE UNIQUE INDEX ux_attempts_one_dispatched
  ON public.payment_outbox_attempts (outbox_id)
  WHERE state = 'DISPATCHED';

DROP INDEX public.ux_attempts_one_terminal_per_outbox;

-- Dead letters are FAILED attempts nobody has re-driven: found from this small index.
CREATE INDEX ix_attempts_failed
  ON public.payment_outbox_attempts (completed_at, outbox_id)
  WHERE state = 'FAILED';

-- ------------------------------------------------------------
-- The queue row remembers where its drive started: the retry ceiling counts the attempts
-- of the current drive only (0023), so a re-driven item gets a full set of retries.
-- ------------------------------------------------------------
ALTER TABLE public.payment_outbox_pending
  ADD COLUMN drive_attempt_base INT NOT NULL DEFAULT 0,
  ADD CONSTRAINT ck_pending_drive_attempt_base CHECK (drive_attempt_base >= 0 AND drive_attempt_base <= attempt_count);

-- ------------------------------------------------------------
-- Dead letters: FAILED attempts that were not re-driven (exactly the items whose latest
-- terminal attempt is FAILED and that are not queued: a queue row is only ever recreated
-- by a re-drive, which records the FAILED attempt it answers).
-- ------------------------------------------------------------
CREATE FUNCTION public.outbox_failed_items(p_rail_type text, p_error_code text, p_limit int)
RETURNS TABLE (
  outbox_id         uuid,
  instruction_id    text,
  participant_id    text,
  sequence_id       bigint,
  rail_type         text,
  failed_attempt_id uuid,
  attempts          int,
  drive             int,
  error_code        text,
  error_message     text,
  failed_at         timestamptz
)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  IF p_limit IS NULL OR p_limit < 1 OR p_limit > 10000 THEN
    RAISE EXCEPTION 'outbox_failed_items: p_limit must be between 1 and 10000, got %', p_limit
      USING ERRCODE = '22023';
  END IF;
  RETURN QUERY
  SELECT i.outbox_id, i.instruction_id, i.participant_id, i.sequence_id, i.rail_type,
         f.attempt_id, f.attempt_no, f.drive, f.error_code, f.error_message, f.completed_at
    FROM public.payment_outbox_attempts f
    JOIN public.payment_outbox_items i ON i.outbox_id = f.outbox_id
   WHERE f.state = 'FAILED'
     AND NOT EXISTS (SELECT 1 FROM public.outbox_redrives r WHERE r.failed_attempt_id = f.attempt_id)
     AND (p_rail_type IS NULL OR i.rail_type = p_rail_type)
     AND (p_error_code IS NULL OR f.error_code = p_error_code)
   ORDER BY f.completed_at, f.outbox_id
   LIMIT p_limit;
END;
$$;

-- Sends a FAILED item to its rail again: a new queue row for the same item (same key,
-- same payload, due now), a re-drive record and an audit row. Re-driving a failure that
-- was already re-driven does nothing (redriven = false) and names the earlier re-drive.
CREATE FUNCTION public.redrive_outbox_item(p_outbox_id uuid, p_reason text)
RETURNS TABLE (
  outbox_id         uuid,
  failed_attempt_id uuid,
  redriven          boolean,
  drive             int,
  redriven_at       timestamptz,
  redriven_by       text
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
  v_item     public.payment_outbox_items;
  v_last     public.payment_outbox_attempts;
  v_earlier  public.outbox_redrives;
  v_attempts int;
  v_drive    int;
  v_at       timestamptz;
BEGIN
  PERFORM public.outbox_assert_reason('redrive_outbox_item', p_reason);

  -- Serialises re-drives of one item (a lock, not a write: the record stays append-only).
  SELECT i.* INTO v_item
    FROM public.payment_outbox_items i
   WHERE i.outbox_id = p_outbox_id
     FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'redrive_outbox_item: there is no outbox item %', p_outbox_id
      USING ERRCODE = 'P7502',
            HINT = 'List re-drivable items with `symphony-relay failed`.';
  END IF;

  SELECT a.* INTO v_last
    FROM public.payment_outbox_attempts a
   WHERE a.outbox_id = p_outbox_id AND a.state IN ('DISPATCHED', 'FAILED')
   ORDER BY a.attempt_no DESC
   LIMIT 1;

  IF v_last.state = 'FAILED' THEN
    SELECT r.* INTO v_earlier FROM public.outbox_redrives r WHERE r.failed_attempt_id = v_last.attempt_id;
    IF FOUND THEN
      RETURN QUERY SELECT p_outbox_id, v_last.attempt_id, false, v_earlier.drive, v_earlier.redriven_at, v_earlier.actor;
      RETURN;
    END IF;
  END IF;

  IF EXISTS (SELECT 1 FROM public.payment_outbox_pending p WHERE p.outbox_id = p_outbox_id) THEN
    RAISE EXCEPTION 'redrive_outbox_item: outbox item % is queued (PENDING), not FAILED; only a FAILED item can be re-driven', p_outbox_id
      USING ERRCODE = 'P7501';
  END IF;
  IF v_last.state IS DISTINCT FROM 'FAILED' THEN
    RAISE EXCEPTION 'redrive_outbox_item: outbox item % is %, not FAILED; a DISPATCHED item is never sent again (it would pay twice)',
      p_outbox_id, COALESCE(v_last.state::text, 'without a terminal attempt')
      USING ERRCODE = 'P7501';
  END IF;

  SELECT max(a.attempt_no) INTO v_attempts FROM public.payment_outbox_attempts a WHERE a.outbox_id = p_outbox_id;
  v_drive := v_last.drive + 1;

  INSERT INTO public.outbox_redrives AS r (outbox_id, failed_attempt_id, drive, reason, actor)
  VALUES (p_outbox_id, v_last.attempt_id, v_drive, btrim(p_reason), session_user)
  RETURNING r.redriven_at INTO v_at;

  INSERT INTO public.payment_outbox_pending (
    outbox_id, participant_id, sequence_id, rail_type, created_at, attempt_count, drive_attempt_base
  )
  VALUES (v_item.outbox_id, v_item.participant_id, v_item.sequence_id, v_item.rail_type,
          v_item.created_at, v_attempts, v_attempts);

  INSERT INTO public.outbox_control_audit (action, target, details, reason, actor)
  VALUES ('redrive', p_outbox_id::text,
          jsonb_build_object('failed_attempt_id', v_last.attempt_id, 'failed_attempt_no', v_last.attempt_no,
                             'error_code', v_last.error_code, 'drive', v_drive, 'rail_type', v_item.rail_type),
          btrim(p_reason), session_user);

  RETURN QUERY SELECT p_outbox_id, v_last.attempt_id, true, v_drive, v_at, session_user::text;
END;
$$;

-- ============================================================
-- 3) Privileges
-- ============================================================
REVOKE ALL ON TABLE public.outbox_pauses, public.outbox_redrives FROM PUBLIC;
REVOKE ALL ON FUNCTION
  public.outbox_pause_target(text, text, text),
  public.outbox_assert_reason(text, text),
  public.pause_dispatch(text, text, text),
  public.resume_dispatch(text, text, text),
  public.outbox_active_pauses(),
  public.outbox_attempt_set_drive(),
  public.outbox_failed_items(text, text, int),
  public.redrive_outbox_item(uuid, text)
  FROM PUBLIC;

GRANT SELECT ON TABLE public.outbox_pauses, public.outbox_redrives
  TO symphony_control, symphony_readonly, symphony_auditor;
GRANT EXECUTE ON FUNCTION public.pause_dispatch(text, text, text) TO symphony_control;
GRANT EXECUTE ON FUNCTION public.resume_dispatch(text, text, text) TO symphony_control;
GRANT EXECUTE ON FUNCTION public.redrive_outbox_item(uuid, text) TO symphony_control;
GRANT EXECUTE ON FUNCTION public.outbox_failed_items(text, text, int)
  TO symphony_control, symphony_readonly, symphony_auditor;
GRANT EXECUTE ON FUNCTION public.outbox_active_pauses()
  TO symphony_control, symphony_executor, symphony_readonly, symphony_auditor;
