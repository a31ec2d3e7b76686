-- symphony:no-transaction
-- 0052_enqueue_cheaper_checks_one_key_index.sql
-- Three costs taken out of every enqueue, with the same contract, checks, order, SQLSTATEs and
-- messages (issue 9).
--
-- 1. outbox_item_input_problem, which every enqueue runs once per item, matched rail_type
--    with '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$' and a traceparent with '{32}', '{16}' and
--    '{2}': counted repetitions, which PostgreSQL's regex engine runs slowly (0051 found the
--    same in the item record's traceparent CHECK). Measured on 100,000 rows: the rail_type
--    pattern 1.85 us a match, against 0.03 us for a length test and the same character
--    classes repeated with '*'; a traceparent 5.2 us against 1.3 us written as 0051 writes
--    it. Both are now written that way: the same rule, the same message.
-- 2. The batch compared the elements that share a key (a window over the whole batch, about
--    1 ms of 500 items) even when no two elements share one. The lock-id statement, which
--    counts the distinct keys and takes no lock, now runs first, and the comparison only
--    when there are fewer distinct keys than elements. The locks are taken where they were.
-- 3. The item record indexed every key twice: ux_items_idempotency_key (unique, the key's
--    owner, every item but the grandfathered re-users of 0020) and ix_items_idempotency_key
--    (every item), because a lookup by key alone cannot use a partial index. Every enqueue
--    wrote both, and the record, never deleted, grows for ever. Now the second one holds only
--    the grandfathered items (ix_items_idempotency_key_legacy, WHERE legacy_key_reuse), and a
--    lookup by key asks both partial indexes, which together hold every item.
--
-- With pg_stat_statements (track = all) on one connection enqueuing 40 batches of 500,
-- alternating with and without this migration: with 1 and 2 only, enqueue_payment_outbox_batch
-- took 19.6-20.5 ms per batch before and 17.9-18.3 after (three each); with a traceparent on
-- every item 24.0-24.5 before, 19.8-20.6 after; a single enqueue's check 36-38 us before,
-- 34-36 after. With all three on a young record (20,000 items), in a noisier hour: 19.6-22.6
-- ms before against 18.0-21.7 after, so 3 shows nothing there beyond the noise; but the
-- record only grows: with 1,000,000 items stored under random keys (UUIDs), 33.1-35.0 ms
-- before and 24.5-25.1 after (two each), the insert statement 16.4-18.2 against 10.0-10.6
-- ms: each key written into one index of a million random keys instead of two.
--
-- Live record: the new index is built CONCURRENTLY (enqueues go on; the runner drops an
-- INVALID leftover of an interrupted build before retrying), the lookups are replaced, and
-- only then is the old index dropped, CONCURRENTLY. Each step can be run again.
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_items_idempotency_key_legacy
  ON public.payment_outbox_items (idempotency_key)
  WHERE legacy_key_reuse;

-- The item a key names for this instruction, as in 0021: the one with this instruction if
-- any (a grandfathered re-user), else the key's owner.
CREATE OR REPLACE FUNCTION public.outbox_item_for_key(p_idempotency_key text, p_instruction_id text)
RETURNS SETOF public.payment_outbox_items
LANGUAGE sql
STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT k.*
    FROM (
      SELECT i.* FROM public.payment_outbox_items i
       WHERE i.idempotency_key = p_idempotency_key AND NOT i.legacy_key_reuse
      UNION ALL
      SELECT i.* FROM public.payment_outbox_items i
       WHERE i.idempotency_key = p_idempotency_key AND i.legacy_key_reuse
    ) k
   ORDER BY (k.instruction_id = p_instruction_id) DESC, k.legacy_key_reuse
   LIMIT 1;
$$;

CREATE OR REPLACE FUNCTION public.outbox_item_input_problem(
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
  v_names       text[] := ARRAY['instruction_id', 'participant_id', 'idempotency_key'];
  v_values      text[] := ARRAY[p_instruction_id, p_participant_id, p_idempotency_key];
  v_max_lengths int[]  := ARRAY[128, 128, 255];
  v_bytes       int;
BEGIN
  FOR v_field IN 1..3 LOOP
    IF v_values[v_field] IS NULL THEN
      code := '23502';
      message := format('%s is required', v_names[v_field]);
      RETURN NEXT;
      RETURN;
    END IF;
    IF length(v_values[v_field]) > v_max_lengths[v_field]
       OR v_values[v_field] !~ '^[\x21-\x7E]([\x20-\x7E]*[\x21-\x7E])?$' THEN
      code := 'P7405';
      message := format('%s must be 1 to %s printable ASCII characters with no leading or trailing space (got %s characters)',
                        v_names[v_field], v_max_lengths[v_field], length(v_values[v_field]));
      RETURN NEXT;
      RETURN;
    END IF;
  END LOOP;

  IF p_rail_type IS NULL THEN
    code := '23502';
    message := 'rail_type is required';
    RETURN NEXT;
    RETURN;
  END IF;
  IF length(p_rail_type) > 64 OR p_rail_type !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]*$' THEN
    code := 'P7406';
    message := format('rail_type must be 1-64 letters, digits, "_", ".", ":" or "-", starting with a letter or digit (got %s characters)',
                      length(p_rail_type));
    RETURN NEXT;
    RETURN;
  END IF;

  IF p_payload IS NULL THEN
    code := '23502';
    message := 'payload is required';
    RETURN NEXT;
    RETURN;
  END IF;
  IF jsonb_typeof(p_payload) <> 'object' THEN
    code := '23514';
    message := format('payload must be a JSON object, not a JSON %s', jsonb_typeof(p_payload));
    RETURN NEXT;
    RETURN;
  END IF;
  v_bytes := octet_length(p_payload::text);
  IF v_bytes > p_max_payload_bytes THEN
    code := 'P7403';
    message := format('payload is %s bytes of JSON; the limit is %s bytes (outbox_limits.max_payload_bytes)',
                      v_bytes, p_max_payload_bytes);
    RETURN NEXT;
    RETURN;
  END IF;
  -- 55 characters, three hex runs after "00-", dashes at 36 and 53: the runs are 32, 16 and
  -- 2 long (the rule of the item record's CHECK since 0051).
  IF p_traceparent IS NOT NULL
     AND (length(p_traceparent) <> 55
          OR p_traceparent !~ '^00-[0-9a-f]+-[0-9a-f]+-[0-9a-f]+$'
          OR substr(p_traceparent, 36, 1) <> '-'
          OR substr(p_traceparent, 53, 1) <> '-'
          OR substr(p_traceparent, 4, 32) = repeat('0', 32)
          OR substr(p_traceparent, 37, 16) = repeat('0', 16)) THEN
    code := 'P7407';
    message := 'traceparent must be a W3C trace context: 00-<32 lowercase hex trace id>-<16 lowercase hex parent id>-<2 hex flags>, ids not all zero';
    RETURN NEXT;
    RETURN;
  END IF;
  -- strict $.**{n}: any value nested inside n objects/arrays.
  IF jsonb_path_exists(p_payload, format('strict $.**{%s}', p_max_payload_depth + 1)::jsonpath) THEN
    code := 'P7404';
    message := format('payload is nested deeper than %s levels (outbox_limits.max_payload_depth)', p_max_payload_depth);
    RETURN NEXT;
    RETURN;
  END IF;
END;
$$;

-- enqueue_payment_outbox_batch: as in 0044, the comparison of elements that share a key run
-- only when some do, and a stored key looked up in both partial indexes.
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
  v_limits     public.outbox_limits;
  v_bad        record;
  v_lock_key   bigint;
  v_lock_keys  bigint[];
  v_key_count  int;
  -- The fresh items, in input order (one per key).
  v_ord        bigint[];
  v_id         uuid[];
  v_instr      text[];
  v_part       text[];
  v_key        text[];
  v_rail       text[];
  v_payload    jsonb[];
  v_sha        text[];
  v_trace      text[];
  v_nth        bigint[];
  v_part_new   bigint[];
  -- What the numbering statement gave them.
  v_seq        bigint[];
  v_created    timestamptz[];
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

  -- The lock ids of the whole batch in one call (sorted, distinct); their count is the
  -- number of distinct keys.
  SELECT public.outbox_key_lock_ids(array_agg(d.idempotency_key)), count(*)::int
    INTO v_lock_keys, v_key_count
    FROM (SELECT DISTINCT o.elem ->> 'idempotency_key' AS idempotency_key
            FROM jsonb_array_elements(p_items) AS o(elem)) d;

  -- Within the batch: a key is one payment too. Only a batch that repeats a key can break
  -- that, so a batch of distinct keys (the usual one) skips the comparison.
  IF v_key_count < jsonb_array_length(p_items) THEN
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
  END IF;

  -- Keys locked in one global order: two batches can never deadlock each other. Each lock
  -- is tried inline first: only a key another session holds goes through the bounded wait
  -- of schema_xact_lock.
  FOREACH v_lock_key IN ARRAY v_lock_keys LOOP
    IF NOT pg_try_advisory_xact_lock(v_lock_key) THEN
      PERFORM public.schema_xact_lock('idempotency key', v_lock_key);
    END IF;
  END LOOP;

  -- The fresh items, and all that is theirs except their numbers (statements after the
  -- locks: they see what earlier holders of these keys committed). Ids are drawn in input
  -- order, as 0025 drew them.
  SELECT array_agg(f.ord ORDER BY f.ord), array_agg(f.id ORDER BY f.ord),
         array_agg(f.instruction_id ORDER BY f.ord), array_agg(f.participant_id ORDER BY f.ord),
         array_agg(f.idempotency_key ORDER BY f.ord), array_agg(f.rail_type ORDER BY f.ord),
         array_agg(f.payload ORDER BY f.ord), array_agg(f.payload_sha256 ORDER BY f.ord),
         array_agg(f.traceparent ORDER BY f.ord), array_agg(f.nth ORDER BY f.ord),
         array_agg(f.participant_new ORDER BY f.ord)
    INTO v_ord, v_id, v_instr, v_part, v_key, v_rail, v_payload, v_sha, v_trace, v_nth, v_part_new
    FROM (
      SELECT r.*, uuidv7() AS id,
             encode(sha256(convert_to(r.payload::text, 'UTF8')), 'hex') AS payload_sha256
        FROM (
          SELECT k.*,
                 row_number() OVER (PARTITION BY k.participant_id ORDER BY k.ord) AS nth,
                 count(*) OVER (PARTITION BY k.participant_id) AS participant_new
            FROM (
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
            ) k
            -- Not stored: in neither partial index. LIMIT 1 keeps each a probe of its index
            -- per key (a join could read the whole record instead).
            LEFT JOIN LATERAL (
              SELECT true AS stored FROM public.payment_outbox_items i
               WHERE i.idempotency_key = k.idempotency_key AND NOT i.legacy_key_reuse
               LIMIT 1
            ) owner ON true
            LEFT JOIN LATERAL (
              SELECT true AS stored FROM public.payment_outbox_items i
               WHERE i.idempotency_key = k.idempotency_key AND i.legacy_key_reuse
               LIMIT 1
            ) reuser ON true
           WHERE owner.stored IS NULL AND reuser.stored IS NULL
        ) r
       ORDER BY r.ord
    ) f;

  -- A key already stored: it must be a replay of the same payment.
  IF COALESCE(cardinality(v_ord), 0) < v_key_count THEN
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
  END IF;

  IF cardinality(v_ord) > 0 THEN
    -- From the counter upsert to commit this batch holds its participants' counters: only
    -- the numbering and the two inserts happen here.
    WITH fresh AS (
      SELECT u.*
        FROM unnest(v_ord, v_id, v_instr, v_part, v_key, v_rail, v_payload, v_sha, v_trace, v_nth, v_part_new)
             AS u(ord, outbox_id, instruction_id, participant_id, idempotency_key, rail_type, payload,
                  payload_sha256, traceparent, nth, participant_new)
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
      SELECT f.outbox_id, f.instruction_id, f.participant_id,
             a.next_after - f.participant_new + f.nth - 1,
             f.idempotency_key, f.rail_type, f.payload, f.payload_sha256, f.traceparent
        FROM fresh f
        JOIN allocated a ON a.participant_id = f.participant_id
       ORDER BY f.ord
      RETURNING i.outbox_id, i.participant_id, i.sequence_id, i.rail_type, i.created_at
    ),
    queued AS (
      INSERT INTO public.payment_outbox_pending (outbox_id, participant_id, sequence_id, rail_type, created_at)
      SELECT n.outbox_id, n.participant_id, n.sequence_id, n.rail_type, n.created_at
        FROM inserted n
       ORDER BY n.outbox_id
    )
    SELECT array_agg(n.sequence_id ORDER BY f.ord), array_agg(n.created_at ORDER BY f.ord)
      INTO v_seq, v_created
      FROM inserted n
      JOIN fresh f ON f.outbox_id = n.outbox_id;
  END IF;

  IF COALESCE(cardinality(v_ord), 0) = v_key_count THEN
    -- Every key was fresh: each element is the new item of its key.
    RETURN QUERY
    SELECT n.outbox_id, n.sequence_id, n.created_at, 'PENDING'::text
      FROM jsonb_array_elements(p_items) WITH ORDINALITY AS o(elem, ord)
      JOIN unnest(v_key, v_id, v_seq, v_created) AS n(idempotency_key, outbox_id, sequence_id, created_at)
        ON n.idempotency_key = o.elem ->> 'idempotency_key'
     ORDER BY o.ord;
    RETURN;
  END IF;

  RETURN QUERY
  SELECT x.outbox_id, x.sequence_id, x.created_at, public.outbox_item_state(x.outbox_id)
    FROM jsonb_array_elements(p_items) WITH ORDINALITY AS o(elem, ord)
   CROSS JOIN LATERAL public.outbox_item_for_key(o.elem ->> 'idempotency_key', o.elem ->> 'instruction_id') x
   ORDER BY o.ord;
END;
$$;

DROP INDEX CONCURRENTLY IF EXISTS public.ix_items_idempotency_key;
