-- 0020_payment_outbox_items.sql
-- The item record: every payment instruction written once, at enqueue, and kept for ever.
--
-- Why:
--   * One idempotency key must mean one payment. Rails de-duplicate on the key alone, so two
--     instructions that shared a key were both recorded DISPATCHED while the rail paid only
--     the first. The key's uniqueness used to live on the pending row, which is deleted when
--     the item finishes; it now lives here, on a row that is never deleted.
--   * The payload was copied into every attempt row (ZOMBIE_REQUEUE rows included) and into
--     the pending row. It is now stored once; the queue row and the attempt rows refer to
--     the item by outbox_id and hold only what is theirs.
--
-- Existing data moves forward without loss: every item still queued or already attempted
-- is copied here before any column is dropped, and the migration refuses to go on if an
-- attempt row disagrees with its item on anything it is about to drop.

CREATE TABLE public.payment_outbox_items (
  outbox_id        UUID PRIMARY KEY,
  instruction_id   TEXT NOT NULL,
  participant_id   TEXT NOT NULL,
  sequence_id      BIGINT NOT NULL,
  idempotency_key  TEXT NOT NULL,
  rail_type        TEXT NOT NULL,
  payload          JSONB NOT NULL,
  -- sha256 of the payload's canonical jsonb text, lowercase hex: lets a reader compare
  -- payloads, and an auditor prove what was sent, without reading them.
  payload_sha256   TEXT NOT NULL,
  created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
  -- The producer's W3C trace context, when it sent one: every dispatch continues its trace.
  traceparent      TEXT,
  -- Only this migration sets it: true for the second and later items that reused one
  -- idempotency key before keys were unique (kept, but they own no key).
  legacy_key_reuse BOOLEAN NOT NULL DEFAULT false,

  CONSTRAINT ux_items_participant_sequence UNIQUE (participant_id, sequence_id),
  CONSTRAINT ck_items_payload_is_object CHECK (jsonb_typeof(payload) = 'object'),
  CONSTRAINT ck_items_payload_sha256 CHECK (payload_sha256 ~ '^[0-9a-f]{64}$'),
  CONSTRAINT ck_items_traceparent CHECK (
    traceparent IS NULL OR traceparent ~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$'
  )
);

COMMENT ON TABLE public.payment_outbox_items IS
  'Every outbox item as enqueued (ids, key, rail, payload once). Written only by the enqueue functions; UPDATE, DELETE and TRUNCATE raise P0001.';

-- ------------------------------------------------------------
-- Backfill: queued items from the pending rows, finished ones from their attempts.
-- ------------------------------------------------------------
INSERT INTO public.payment_outbox_items (
  outbox_id, instruction_id, participant_id, sequence_id, idempotency_key, rail_type,
  payload, payload_sha256, created_at
)
SELECT p.outbox_id, p.instruction_id, p.participant_id, p.sequence_id, p.idempotency_key,
       p.rail_type, p.payload, encode(sha256(convert_to(p.payload::text, 'UTF8')), 'hex'),
       p.created_at
  FROM public.payment_outbox_pending p;

INSERT INTO public.payment_outbox_items (
  outbox_id, instruction_id, participant_id, sequence_id, idempotency_key, rail_type,
  payload, payload_sha256, created_at
)
SELECT DISTINCT ON (a.outbox_id)
       a.outbox_id, a.instruction_id, a.participant_id, a.sequence_id, a.idempotency_key,
       a.rail_type, a.payload, encode(sha256(convert_to(a.payload::text, 'UTF8')), 'hex'),
       -- The enqueue time survives in the uuidv7 outbox_id.
       uuid_extract_timestamp(a.outbox_id)
  FROM public.payment_outbox_attempts a
 WHERE NOT EXISTS (SELECT 1 FROM public.payment_outbox_items i WHERE i.outbox_id = a.outbox_id)
 ORDER BY a.outbox_id, a.attempt_no;

-- The first item of a key keeps it; later ones that reused it are marked.
UPDATE public.payment_outbox_items i
   SET legacy_key_reuse = true
  FROM (
    SELECT x.outbox_id,
           row_number() OVER (PARTITION BY x.idempotency_key ORDER BY x.created_at, x.outbox_id) AS nth
      FROM public.payment_outbox_items x
  ) ranked
 WHERE ranked.outbox_id = i.outbox_id
   AND ranked.nth > 1;

-- INV-KEY-ONE-PAYMENT: one idempotency key, one item, for ever (the item row is never
-- deleted). Items that reused a key before this migration are grandfathered out of it.
CREATE UNIQUE INDEX ux_items_idempotency_key
  ON public.payment_outbox_items (idempotency_key)
  WHERE NOT legacy_key_reuse;

-- Lookups by key (enqueue, replays of grandfathered items) cannot use the partial index
-- above: without this one every enqueue would scan the whole, ever-growing item record.
CREATE INDEX ix_items_idempotency_key ON public.payment_outbox_items (idempotency_key);

DO $$
DECLARE
  v_conflict record;
BEGIN
  SELECT a.outbox_id, a.attempt_no INTO v_conflict
    FROM public.payment_outbox_attempts a
    JOIN public.payment_outbox_items i ON i.outbox_id = a.outbox_id
   WHERE (a.instruction_id, a.participant_id, a.sequence_id, a.idempotency_key, a.rail_type, a.payload)
         IS DISTINCT FROM
         (i.instruction_id, i.participant_id, i.sequence_id, i.idempotency_key, i.rail_type, i.payload)
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION '0020: attempt % of outbox item % disagrees with its item record; refusing to drop the copied columns',
      v_conflict.attempt_no, v_conflict.outbox_id
      USING ERRCODE = 'P7400',
            HINT = 'The ledger holds two versions of one item; inspect it before migrating.';
  END IF;
END;
$$;

-- Append-only from here on (the backfill above is the only UPDATE it will ever see).
CREATE TRIGGER trg_items_deny_update_delete
BEFORE UPDATE OR DELETE ON public.payment_outbox_items
FOR EACH ROW EXECUTE FUNCTION public.deny_append_only_mutation('INV-ITEMS-APPEND-ONLY');

CREATE TRIGGER trg_items_deny_truncate
BEFORE TRUNCATE ON public.payment_outbox_items
FOR EACH STATEMENT EXECUTE FUNCTION public.deny_append_only_mutation('INV-ITEMS-APPEND-ONLY');

-- ------------------------------------------------------------
-- The queue and the ledger refer to the item instead of copying it.
-- ------------------------------------------------------------
-- pending keeps participant, sequence and rail: the claim filters and orders on them.
ALTER TABLE public.payment_outbox_pending
  DROP COLUMN instruction_id,
  DROP COLUMN idempotency_key,
  DROP COLUMN payload,
  ADD CONSTRAINT fk_pending_item FOREIGN KEY (outbox_id) REFERENCES public.payment_outbox_items (outbox_id);

-- An attempt holds the facts of the attempt only (which item, which try, what happened).
ALTER TABLE public.payment_outbox_attempts
  DROP COLUMN instruction_id,
  DROP COLUMN participant_id,
  DROP COLUMN sequence_id,
  DROP COLUMN idempotency_key,
  DROP COLUMN rail_type,
  DROP COLUMN payload,
  ADD CONSTRAINT fk_attempts_item FOREIGN KEY (outbox_id) REFERENCES public.payment_outbox_items (outbox_id),
  -- Bounded text, whatever an adapter returns (the functions truncate before inserting).
  ADD CONSTRAINT ck_attempts_error_message_bounded CHECK (length(error_message) <= 1000) NOT VALID,
  ADD CONSTRAINT ck_attempts_error_code_bounded CHECK (length(error_code) <= 64) NOT VALID,
  ADD CONSTRAINT ck_attempts_rail_reference_bounded CHECK (length(rail_reference) <= 512) NOT VALID;

-- Readers that could see the copies see the record.
REVOKE ALL ON TABLE public.payment_outbox_items FROM PUBLIC;
GRANT SELECT ON TABLE public.payment_outbox_items TO symphony_readonly, symphony_auditor;
GRANT SELECT, MAINTAIN ON TABLE public.payment_outbox_items TO symphony_control;
