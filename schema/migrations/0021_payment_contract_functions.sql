-- 0021_payment_contract_functions.sql
-- The outbox functions on the item record (0020), with the payment contract enforced at
-- enqueue and the operator limits (0019) enforced where arguments enter.
--
-- The contract, in the SQLSTATEs a producer sees (SPEC §2.3, P74xx):
--   P7401  the idempotency key is already used by a different instruction (one key, one
--          payment: rails de-duplicate on the key alone)
--   P7402  the same (instruction, key) replayed with different content (participant,
--          rail_type or payload); an identical replay returns the existing item
--   P7403  payload larger than outbox_limits.max_payload_bytes (its JSON text, in bytes)
--   P7404  payload nested deeper than outbox_limits.max_payload_depth
--   P7405  instruction_id, participant_id or idempotency_key not 1..N printable ASCII
--          characters without leading or trailing space (they travel as HTTP headers)
--   P7406  rail_type not 1-64 letters, digits, "_", ".", ":" or "-" starting with a letter
--          or digit (the SYMPHONY_RAILS key pattern)
--   P7407  traceparent (optional) not a W3C trace context "00-<32 hex>-<16 hex>-<2 hex>"
--          with non-zero ids
--   23514  payload not a JSON object (as before); 23502 a required field missing
-- Out-of-range arguments of the runtime functions (batch size, lease, retry delay) are 22023.
--
-- The runtime functions on the item record (claim by rail types, bounded completion and
-- repair) are defined once, with the operator controls, in 0024: 0021 and 0024 were written
-- together, so the claim and completion bodies are not written twice. Until 0024 applies,
-- the queue is not in use (migrations run before any relayer).

-- ------------------------------------------------------------
-- Shared pieces
-- ------------------------------------------------------------
-- The retry ceiling now comes from outbox_limits only: a session's
-- SET symphony.outbox_retry_ceiling changes nothing.
CREATE OR REPLACE FUNCTION public.outbox_retry_ceiling()
RETURNS int
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT l.retry_ceiling FROM public.outbox_limits l;
$$;

-- What is wrong with one item's fields, as (sqlstate, message); no row when nothing is.
-- Checks run cheapest first, and the payload's size before its depth, so a huge payload is
-- refused without being walked.
CREATE FUNCTION public.outbox_item_input_problem(
  p_instruction_id    text,
  p_participant_id    text,
  p_idempotency_key   text,
  p_rail_type         text,
  p_payload           jsonb,
  p_traceparent       text,
  p_max_payload_bytes int,
  p_max_payload_depth int
)
RETURNS TABLE (code text, message text)
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  v_field record;
  v_bytes int;
BEGIN
  FOR v_field IN
    SELECT f.name, f.value, f.max_length
      FROM (VALUES (1, 'instruction_id', p_instruction_id, 128),
                   (2, 'participant_id', p_participant_id, 128),
                   (3, 'idempotency_key', p_idempotency_key, 255)) AS f(ord, name, value, max_length)
     ORDER BY f.ord
  LOOP
    IF v_field.value IS NULL THEN
      RETURN QUERY SELECT '23502'::text, format('%s is required', v_field.name);
      RETURN;
    END IF;
    IF length(v_field.value) > v_field.max_length
       OR v_field.value !~ '^[\x21-\x7E]([\x20-\x7E]*[\x21-\x7E])?$' THEN
      RETURN QUERY SELECT 'P7405'::text,
        format('%s must be 1 to %s printable ASCII characters with no leading or trailing space (got %s characters)',
               v_field.name, v_field.max_length, length(v_field.value));
      RETURN;
    END IF;
  END LOOP;

  IF p_rail_type IS NULL THEN
    RETURN QUERY SELECT '23502'::text, 'rail_type is required'::text;
    RETURN;
  END IF;
  IF p_rail_type !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$' THEN
    RETURN QUERY SELECT 'P7406'::text,
      format('rail_type must be 1-64 letters, digits, "_", ".", ":" or "-", starting with a letter or digit (got %s characters)',
             length(p_rail_type));
    RETURN;
  END IF;

  IF p_payload IS NULL THEN
    RETURN QUERY SELECT '23502'::text, 'payload is required'::text;
    RETURN;
  END IF;
  IF jsonb_typeof(p_payload) <> 'object' THEN
    RETURN QUERY SELECT '23514'::text,
      format('payload must be a JSON object, not a JSON %s', jsonb_typeof(p_payload));
    RETURN;
  END IF;
  v_bytes := octet_length(p_payload::text);
  IF v_bytes > p_max_payload_bytes THEN
    RETURN QUERY SELECT 'P7403'::text,
      format('payload is %s bytes of JSON; the limit is %s bytes (outbox_limits.max_payload_bytes)',
             v_bytes, p_max_payload_bytes);
    RETURN;
  END IF;
  IF p_traceparent IS NOT NULL
     AND (p_traceparent !~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$'
          OR substr(p_traceparent, 4, 32) = repeat('0', 32)
          OR substr(p_traceparent, 37, 16) = repeat('0', 16)) THEN
    RETURN QUERY SELECT 'P7407'::text,
      'traceparent must be a W3C trace context: 00-<32 lowercase hex trace id>-<16 lowercase hex parent id>-<2 hex flags>, ids not all zero'::text;
    RETURN;
  END IF;
  -- strict $.**{n}: any value nested inside n objects/arrays.
  IF jsonb_path_exists(p_payload, format('strict $.**{%s}', p_max_payload_depth + 1)::jsonpath) THEN
    RETURN QUERY SELECT 'P7404'::text,
      format('payload is nested deeper than %s levels (outbox_limits.max_payload_depth)', p_max_payload_depth);
    RETURN;
  END IF;
END;
$$;

-- An existing item met again under the same key: refused unless it is the same payment.
CREATE FUNCTION public.outbox_replay_problem(
  p_existing       public.payment_outbox_items,
  p_instruction_id text,
  p_participant_id text,
  p_rail_type      text,
  p_payload        jsonb
)
RETURNS TABLE (code text, message text)
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  v_differs text[] := '{}';
BEGIN
  IF p_existing.instruction_id <> p_instruction_id THEN
    RETURN QUERY SELECT 'P7401'::text,
      format('idempotency key is already used by a different instruction (outbox item %s); one key is one payment, use a new key for a new instruction',
             p_existing.outbox_id);
    RETURN;
  END IF;
  IF p_existing.participant_id <> p_participant_id THEN v_differs := v_differs || 'participant_id'::text; END IF;
  IF p_existing.rail_type <> p_rail_type THEN v_differs := v_differs || 'rail_type'::text; END IF;
  IF p_existing.payload <> p_payload THEN v_differs := v_differs || 'payload'::text; END IF;
  IF cardinality(v_differs) > 0 THEN
    RETURN QUERY SELECT 'P7402'::text,
      format('instruction and idempotency key were already enqueued (outbox item %s) with a different %s; a replay must repeat the original exactly',
             p_existing.outbox_id, array_to_string(v_differs, ', '));
  END IF;
END;
$$;

-- The advisory lock that serialises enqueues of one idempotency key (single and batch).
CREATE FUNCTION public.outbox_key_lock_id(p_idempotency_key text)
RETURNS bigint
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT hashtextextended('symphony.idempotency_key' || chr(31) || p_idempotency_key, 1);
$$;

-- 'PENDING' while queued, else the state of the item's latest terminal attempt.
CREATE FUNCTION public.outbox_item_state(p_outbox_id uuid)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT COALESCE(
    (SELECT 'PENDING' FROM public.payment_outbox_pending p WHERE p.outbox_id = p_outbox_id),
    (SELECT a.state::text FROM public.payment_outbox_attempts a
      WHERE a.outbox_id = p_outbox_id AND a.state IN ('DISPATCHED', 'FAILED')
      ORDER BY a.attempt_no DESC LIMIT 1),
    'UNKNOWN');
$$;

-- The item a key names for this instruction: the one with this instruction if any (a
-- grandfathered duplicate), else the key's owner.
CREATE FUNCTION public.outbox_item_for_key(p_idempotency_key text, p_instruction_id text)
RETURNS SETOF public.payment_outbox_items
LANGUAGE sql
STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT i.*
    FROM public.payment_outbox_items i
   WHERE i.idempotency_key = p_idempotency_key
   ORDER BY (i.instruction_id = p_instruction_id) DESC, i.legacy_key_reuse
   LIMIT 1;
$$;

-- ------------------------------------------------------------
-- enqueue_payment_outbox
-- ------------------------------------------------------------
-- A new optional argument (the producer's traceparent) means a new signature: the 0002 one
-- is dropped, and calls with five arguments keep working through the default.
DROP FUNCTION public.enqueue_payment_outbox(text, text, text, text, jsonb);

CREATE FUNCTION public.enqueue_payment_outbox(
  p_instruction_id  text,
  p_participant_id  text,
  p_idempotency_key text,
  p_rail_type       text,
  p_payload         jsonb,
  p_traceparent     text DEFAULT NULL
)
RETURNS TABLE (
  outbox_id   uuid,
  sequence_id bigint,
  created_at  timestamptz,
  state       text
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
  v_limits   public.outbox_limits;
  v_problem  record;
  v_existing public.payment_outbox_items;
  v_item     public.payment_outbox_items;
BEGIN
  SELECT l.* INTO v_limits FROM public.outbox_limits l;
  SELECT pr.code, pr.message INTO v_problem
    FROM public.outbox_item_input_problem(p_instruction_id, p_participant_id, p_idempotency_key,
                                          p_rail_type, p_payload, p_traceparent,
                                          v_limits.max_payload_bytes,
                                          v_limits.max_payload_depth) pr;
  IF FOUND THEN
    RAISE EXCEPTION 'enqueue_payment_outbox: %', v_problem.message USING ERRCODE = v_problem.code;
  END IF;

  -- Serialises enqueues of one key until commit; the lookup below (a new statement under
  -- READ COMMITTED) then sees whatever an earlier holder committed.
  PERFORM pg_advisory_xact_lock(public.outbox_key_lock_id(p_idempotency_key));

  SELECT f.* INTO v_existing FROM public.outbox_item_for_key(p_idempotency_key, p_instruction_id) f;
  IF FOUND THEN
    SELECT pr.code, pr.message INTO v_problem
      FROM public.outbox_replay_problem(v_existing, p_instruction_id, p_participant_id, p_rail_type, p_payload) pr;
    IF FOUND THEN
      RAISE EXCEPTION 'enqueue_payment_outbox: %', v_problem.message USING ERRCODE = v_problem.code;
    END IF;
    RETURN QUERY SELECT v_existing.outbox_id, v_existing.sequence_id, v_existing.created_at,
                        public.outbox_item_state(v_existing.outbox_id);
    RETURN;
  END IF;

  INSERT INTO public.payment_outbox_items AS i (
    outbox_id, instruction_id, participant_id, sequence_id, idempotency_key, rail_type,
    payload, payload_sha256, traceparent
  )
  VALUES (
    uuidv7(), p_instruction_id, p_participant_id,
    public.bump_participant_outbox_seq(p_participant_id),
    p_idempotency_key, p_rail_type, p_payload,
    encode(sha256(convert_to(p_payload::text, 'UTF8')), 'hex'), p_traceparent
  )
  RETURNING i.* INTO v_item;

  INSERT INTO public.payment_outbox_pending (outbox_id, participant_id, sequence_id, rail_type, created_at)
  VALUES (v_item.outbox_id, v_item.participant_id, v_item.sequence_id, v_item.rail_type, v_item.created_at);

  RETURN QUERY SELECT v_item.outbox_id, v_item.sequence_id, v_item.created_at, 'PENDING'::text;
END;
$$;

-- ------------------------------------------------------------
-- enqueue_payment_outbox_batch: the same contract element by element and within the batch.
-- Any refused element refuses the whole batch (one transaction), naming the element.
-- ------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.enqueue_payment_outbox_batch(p_items jsonb)
RETURNS TABLE (
  outbox_id   uuid,
  sequence_id bigint,
  created_at  timestamptz,
  state       text
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
  v_limits   public.outbox_limits;
  v_bad      record;
  v_lock_key bigint;
  v_new      uuid[];
BEGIN
  IF p_items IS NULL OR jsonb_typeof(p_items) <> 'array' THEN
    RAISE EXCEPTION 'enqueue_payment_outbox_batch: p_items must be a JSON array of item objects, got %',
      COALESCE(jsonb_typeof(p_items), 'NULL')
      USING ERRCODE = '22023';
  END IF;
  IF jsonb_array_length(p_items) > 10000 THEN
    RAISE EXCEPTION 'enqueue_payment_outbox_batch: % items in one batch; the limit is 10000', jsonb_array_length(p_items)
      USING ERRCODE = '22023', HINT = 'Split the batch.';
  END IF;

  SELECT o.ord, jsonb_typeof(o.elem) AS elem_type, bad_field.name AS field INTO v_bad
    FROM jsonb_array_elements(p_items) WITH ORDINALITY AS o(elem, ord)
    LEFT JOIN LATERAL (
      SELECT f.name
        FROM unnest(ARRAY['instruction_id', 'participant_id', 'idempotency_key', 'rail_type', 'traceparent']) AS f(name)
       WHERE jsonb_typeof(o.elem) = 'object'
         AND o.elem ? f.name
         AND jsonb_typeof(o.elem -> f.name) <> 'string'
       LIMIT 1
    ) bad_field ON true
   WHERE jsonb_typeof(o.elem) IS DISTINCT FROM 'object' OR bad_field.name IS NOT NULL
   ORDER BY o.ord
   LIMIT 1;
  IF FOUND THEN
    IF v_bad.elem_type IS DISTINCT FROM 'object' THEN
      RAISE EXCEPTION 'enqueue_payment_outbox_batch: element % of p_items is a JSON %, not an item object', v_bad.ord, v_bad.elem_type
        USING ERRCODE = '22023';
    END IF;
    RAISE EXCEPTION 'enqueue_payment_outbox_batch: element %: % must be a JSON string; nothing of this batch was enqueued', v_bad.ord, v_bad.field
      USING ERRCODE = '22023';
  END IF;

  SELECT l.* INTO v_limits FROM public.outbox_limits l;
  SELECT o.ord, pr.code, pr.message INTO v_bad
    FROM jsonb_array_elements(p_items) WITH ORDINALITY AS o(elem, ord)
   CROSS JOIN LATERAL public.outbox_item_input_problem(
     o.elem ->> 'instruction_id', o.elem ->> 'participant_id', o.elem ->> 'idempotency_key',
     o.elem ->> 'rail_type', o.elem -> 'payload', o.elem ->> 'traceparent',
     v_limits.max_payload_bytes, v_limits.max_payload_depth) pr
   ORDER BY o.ord
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'enqueue_payment_outbox_batch: element %: %; nothing of this batch was enqueued', v_bad.ord, v_bad.message
      USING ERRCODE = v_bad.code;
  END IF;

  -- Within the batch: a key is one payment too.
  SELECT b.ord, b.first_ord, b.code INTO v_bad
    FROM (
      SELECT o.ord,
             first_value(o.ord) OVER w AS first_ord,
             CASE WHEN (o.elem ->> 'instruction_id') <> first_value(o.elem ->> 'instruction_id') OVER w THEN 'P7401'
                  WHEN (o.elem ->> 'participant_id') <> first_value(o.elem ->> 'participant_id') OVER w
                    OR (o.elem ->> 'rail_type') <> first_value(o.elem ->> 'rail_type') OVER w
                    OR (o.elem -> 'payload') <> first_value(o.elem -> 'payload') OVER w THEN 'P7402'
             END AS code
        FROM jsonb_array_elements(p_items) WITH ORDINALITY AS o(elem, ord)
      WINDOW w AS (PARTITION BY o.elem ->> 'idempotency_key' ORDER BY o.ord)
    ) b
   WHERE b.code IS NOT NULL
   ORDER BY b.ord
   LIMIT 1;
  IF FOUND THEN
    IF v_bad.code = 'P7401' THEN
      RAISE EXCEPTION 'enqueue_payment_outbox_batch: element % uses the idempotency key of element % for a different instruction; one key is one payment; nothing of this batch was enqueued',
        v_bad.ord, v_bad.first_ord
        USING ERRCODE = 'P7401';
    END IF;
    RAISE EXCEPTION 'enqueue_payment_outbox_batch: element % repeats the instruction and idempotency key of element % with different content; nothing of this batch was enqueued',
      v_bad.ord, v_bad.first_ord
      USING ERRCODE = 'P7402';
  END IF;

  -- Keys locked in one global order: two batches can never deadlock each other.
  FOR v_lock_key IN
    SELECT DISTINCT public.outbox_key_lock_id(o.elem ->> 'idempotency_key') AS k
      FROM jsonb_array_elements(p_items) AS o(elem)
     ORDER BY k
  LOOP
    PERFORM pg_advisory_xact_lock(v_lock_key);
  END LOOP;

  -- Against stored items (a statement after the locks: it sees what earlier holders committed).
  SELECT o.ord, pr.code, pr.message INTO v_bad
    FROM jsonb_array_elements(p_items) WITH ORDINALITY AS o(elem, ord)
   CROSS JOIN LATERAL public.outbox_item_for_key(o.elem ->> 'idempotency_key', o.elem ->> 'instruction_id') x
   CROSS JOIN LATERAL public.outbox_replay_problem(x, o.elem ->> 'instruction_id', o.elem ->> 'participant_id',
                                                   o.elem ->> 'rail_type', o.elem -> 'payload') pr
   ORDER BY o.ord
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'enqueue_payment_outbox_batch: element %: %; nothing of this batch was enqueued', v_bad.ord, v_bad.message
      USING ERRCODE = v_bad.code;
  END IF;

  WITH keyed AS (
    -- The first occurrence of each key speaks for the item.
    SELECT DISTINCT ON (o.elem ->> 'idempotency_key')
           o.ord,
           o.elem ->> 'instruction_id'  AS instruction_id,
           o.elem ->> 'participant_id'  AS participant_id,
           o.elem ->> 'idempotency_key' AS idempotency_key,
           o.elem ->> 'rail_type'       AS rail_type,
           o.elem -> 'payload'          AS payload,
           o.elem ->> 'traceparent'     AS traceparent
      FROM jsonb_array_elements(p_items) WITH ORDINALITY AS o(elem, ord)
     ORDER BY o.elem ->> 'idempotency_key', o.ord
  ),
  fresh AS (
    SELECT k.*,
           row_number() OVER (PARTITION BY k.participant_id ORDER BY k.ord) AS nth,
           count(*) OVER (PARTITION BY k.participant_id) AS participant_new
      FROM keyed k
     WHERE NOT EXISTS (
       SELECT 1 FROM public.payment_outbox_items i WHERE i.idempotency_key = k.idempotency_key
     )
  ),
  allocated AS (
    -- One bump per participant by its number of new items, in participant order (the
    -- counter rows are locked in one global order); this batch owns [next - n, next - 1].
    INSERT INTO public.participant_outbox_sequences AS s (participant_id, next_sequence_id)
    SELECT f.participant_id, max(f.participant_new) + 1
      FROM fresh f
     GROUP BY f.participant_id
     ORDER BY f.participant_id
    ON CONFLICT (participant_id) DO UPDATE
      SET next_sequence_id = s.next_sequence_id + (excluded.next_sequence_id - 1),
          updated_at = now()
    RETURNING s.participant_id, s.next_sequence_id AS next_after
  ),
  inserted AS (
    INSERT INTO public.payment_outbox_items AS i (
      outbox_id, instruction_id, participant_id, sequence_id, idempotency_key, rail_type,
      payload, payload_sha256, traceparent
    )
    SELECT uuidv7(), f.instruction_id, f.participant_id,
           a.next_after - f.participant_new + f.nth - 1,
           f.idempotency_key, f.rail_type, f.payload,
           encode(sha256(convert_to(f.payload::text, 'UTF8')), 'hex'), f.traceparent
      FROM fresh f
      JOIN allocated a ON a.participant_id = f.participant_id
     ORDER BY f.ord
    RETURNING i.outbox_id
  )
  SELECT COALESCE(array_agg(n.outbox_id), '{}') INTO v_new FROM inserted n;

  INSERT INTO public.payment_outbox_pending (outbox_id, participant_id, sequence_id, rail_type, created_at)
  SELECT i.outbox_id, i.participant_id, i.sequence_id, i.rail_type, i.created_at
    FROM public.payment_outbox_items i
   WHERE i.outbox_id = ANY (v_new)
   ORDER BY i.outbox_id;

  RETURN QUERY
  SELECT x.outbox_id, x.sequence_id, x.created_at, public.outbox_item_state(x.outbox_id)
    FROM jsonb_array_elements(p_items) WITH ORDINALITY AS o(elem, ord)
   CROSS JOIN LATERAL public.outbox_item_for_key(o.elem ->> 'idempotency_key', o.elem ->> 'instruction_id') x
   ORDER BY o.ord;
END;
$$;

-- ------------------------------------------------------------
-- Retry delays are bounded by outbox_limits.max_retry_delay_seconds.
-- ------------------------------------------------------------
CREATE FUNCTION public.assert_retry_delay(p_function text, p_delay_seconds int)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  v_max int := (SELECT l.max_retry_delay_seconds FROM public.outbox_limits l);
BEGIN
  IF p_delay_seconds > v_max THEN
    RAISE EXCEPTION '%: a retry delay of % seconds exceeds outbox_limits.max_retry_delay_seconds (%)',
      p_function, p_delay_seconds, v_max
      USING ERRCODE = '22023',
            HINT = 'Cap retry delays at the limit (the relayer reads it at start).';
  END IF;
END;
$$;

-- ------------------------------------------------------------
-- outbox_queue_stats_by_rail: queue depth per rail type (metrics and status)
-- ------------------------------------------------------------
CREATE FUNCTION public.outbox_queue_stats_by_rail()
RETURNS TABLE (
  rail_type              text,
  pending                bigint,
  due                    bigint,
  oldest_due_age_seconds double precision
)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT p.rail_type,
         count(*),
         count(*) FILTER (WHERE p.claimed_by IS NULL AND p.next_attempt_at <= now()),
         extract(epoch FROM now() - min(p.next_attempt_at)
           FILTER (WHERE p.claimed_by IS NULL AND p.next_attempt_at <= now()))::double precision
    FROM public.payment_outbox_pending p
   GROUP BY p.rail_type
   ORDER BY p.rail_type;
$$;

-- ------------------------------------------------------------
-- Privileges (revoke first; CREATE OR REPLACE kept the earlier grants)
-- ------------------------------------------------------------
REVOKE ALL ON FUNCTION
  public.outbox_item_input_problem(text, text, text, text, jsonb, text, int, int),
  public.outbox_replay_problem(public.payment_outbox_items, text, text, text, jsonb),
  public.outbox_key_lock_id(text),
  public.outbox_item_state(uuid),
  public.outbox_item_for_key(text, text),
  public.assert_retry_delay(text, int),
  public.outbox_queue_stats_by_rail()
  FROM PUBLIC;

REVOKE ALL ON FUNCTION public.enqueue_payment_outbox(text, text, text, text, jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.enqueue_payment_outbox(text, text, text, text, jsonb, text) TO symphony_ingest;
GRANT EXECUTE ON FUNCTION public.outbox_queue_stats_by_rail() TO symphony_executor, symphony_readonly;
