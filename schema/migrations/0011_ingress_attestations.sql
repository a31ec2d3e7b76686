-- 0011_ingress_attestations.sql
-- Append-only ledger of why each ingress request was accepted or rejected: who asked
-- (participant, auth method, certificate fingerprint / key id / jti), what they sent
-- (sha256 of the payload only: never raw payloads, tokens or other secrets) and the
-- decision with its reason code.
--
-- Tamper evidence: records form one hash chain per stream_id (e.g. one per ingress
-- instance or per participant). record_hash is computed by the database over the
-- record's canonical fields and prev_hash; prev_hash must equal the record_hash of the
-- stream's previous record (NULL for the stream's first record). Writers of one stream
-- serialise on a per-stream advisory transaction lock, so two concurrent writers can
-- never both extend the same head; UNIQUE NULLS NOT DISTINCT (stream_id, prev_hash)
-- backs that up structurally (a second successor of a record is a 23505, even from a
-- REPEATABLE READ writer whose snapshot predates the head it lost to).
--
-- SQLSTATEs (messages start with the invariant id):
--   P0001 INV-ATT-APPEND-ONLY UPDATE / DELETE / TRUNCATE
--   P7301 INV-ATT-HASH-CHAIN prev_hash is not the stream's current head
--   23505 INV-ATT-NO-FORK a second successor of a record, or a second genesis, in one stream
--   P7302 INV-ATT-DB-HASH a supplied record_hash differs from the one the database computes
--   23514 INV-ATT-FORMAT malformed hashes, unknown decision/auth method, missing reason
--
-- Writers use record_ingress_attestation(...) (SECURITY DEFINER, granted to ingest),
-- which links the record to the current head itself.

CREATE TABLE public.ingress_attestations (
  attestation_id   UUID PRIMARY KEY DEFAULT uuidv7(),

  -- The chain: position and links, assigned/verified by the BEFORE INSERT trigger.
  stream_id        TEXT NOT NULL,
  stream_seq       BIGINT NOT NULL,
  prev_hash        TEXT,
  record_hash      TEXT NOT NULL,

  -- Request provenance.
  request_id       TEXT NOT NULL,
  instruction_id   TEXT,
  participant_id   TEXT,
  received_at      TIMESTAMPTZ NOT NULL,
  -- The database's clock at insert (set by the trigger), not the writer's.
  recorded_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
  payload_sha256   TEXT NOT NULL,

  -- Authentication evidence: identifiers and fingerprints only.
  auth_method      TEXT NOT NULL,
  cert_fingerprint TEXT,
  key_id           TEXT,
  jti              TEXT,

  decision         TEXT NOT NULL,
  reason_code      TEXT,

  CONSTRAINT ck_attestation_stream_id_not_blank CHECK (length(btrim(stream_id)) > 0),
  CONSTRAINT ck_attestation_stream_seq_positive CHECK (stream_seq >= 1),
  CONSTRAINT ck_attestation_request_id_not_blank CHECK (length(btrim(request_id)) > 0),
  CONSTRAINT ck_attestation_payload_sha256_hex CHECK (payload_sha256 ~ '^[0-9a-f]{64}$'),
  CONSTRAINT ck_attestation_prev_hash_hex CHECK (prev_hash IS NULL OR prev_hash ~ '^[0-9a-f]{64}$'),
  CONSTRAINT ck_attestation_record_hash_hex CHECK (record_hash ~ '^[0-9a-f]{64}$'),
  CONSTRAINT ck_attestation_cert_fingerprint_hex CHECK (cert_fingerprint IS NULL OR cert_fingerprint ~ '^[0-9a-f]{64}$'),
  CONSTRAINT ck_attestation_auth_method CHECK (auth_method IN ('MTLS', 'JWT', 'MTLS_AND_JWT', 'API_KEY', 'NONE')),
  CONSTRAINT ck_attestation_decision CHECK (decision IN ('ACCEPTED', 'REJECTED')),
  -- A rejection must say why; an acceptance must say what and for whom.
  CONSTRAINT ck_attestation_rejection_has_reason CHECK (decision <> 'REJECTED' OR reason_code IS NOT NULL),
  CONSTRAINT ck_attestation_acceptance_identifies_instruction CHECK (
    decision <> 'ACCEPTED' OR (instruction_id IS NOT NULL AND participant_id IS NOT NULL)
  ),

  CONSTRAINT ux_attestation_stream_seq UNIQUE (stream_id, stream_seq),
  -- One successor per record and one genesis per stream: the chain cannot fork.
  CONSTRAINT ux_attestation_stream_prev_hash UNIQUE NULLS NOT DISTINCT (stream_id, prev_hash)
);

CREATE INDEX ix_attestation_instruction ON public.ingress_attestations (instruction_id)
  WHERE instruction_id IS NOT NULL;
CREATE INDEX ix_attestation_received_at ON public.ingress_attestations (received_at);

COMMENT ON TABLE public.ingress_attestations IS
  'Append-only, per-stream hash-chained ingress attestation ledger. Hashes and identifiers only, never payloads or secrets. Write through record_ingress_attestation().';
COMMENT ON COLUMN public.ingress_attestations.record_hash IS
  'sha256 (hex) of ingress_attestation_canonical(row): a length-prefixed encoding of every field except record_hash, including prev_hash.';

-- ------------------------------------------------------------
-- Canonical encoding and hash
-- ------------------------------------------------------------
-- "symphony.ingress_attestation.v1" followed by "|<field>" for each field in a fixed order,
-- where a field is "-" when NULL, else "<UTF-8 byte length>:<value>". The length prefix
-- makes the encoding unambiguous whatever the values contain; timestamps are UTC ISO-8601
-- with microseconds so the session TimeZone cannot change a hash.
CREATE FUNCTION public.ingress_attestation_canonical(a public.ingress_attestations)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT 'symphony.ingress_attestation.v1' || string_agg(
           '|' || CASE WHEN f.value IS NULL THEN '-'
                       ELSE octet_length(convert_to(f.value, 'UTF8'))::text || ':' || f.value END,
           '' ORDER BY f.ord)
    FROM unnest(ARRAY[
           a.attestation_id::text,
           a.stream_id,
           a.stream_seq::text,
           a.prev_hash,
           a.request_id,
           a.instruction_id,
           a.participant_id,
           to_char(a.received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           to_char(a.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           a.payload_sha256,
           a.auth_method,
           a.cert_fingerprint,
           a.key_id,
           a.jti,
           a.decision,
           a.reason_code
         ]) WITH ORDINALITY AS f(value, ord)
$$;

-- The current head of a stream. Callers hold the stream's advisory lock (see below).
CREATE FUNCTION public.ingress_attestation_stream_head(p_stream_id text)
RETURNS TABLE (record_hash text, stream_seq bigint)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT a.record_hash, a.stream_seq
    FROM public.ingress_attestations a
   WHERE a.stream_id = p_stream_id
   ORDER BY a.stream_seq DESC
   LIMIT 1
$$;

-- One transaction-scoped advisory lock per stream (two-int4 key space, namespace 7301,
-- so it cannot collide with the outbox's 64-bit keys). A hash collision between two
-- streams only makes them share a lock.
CREATE FUNCTION public.lock_ingress_attestation_stream(p_stream_id text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT pg_advisory_xact_lock(7301, hashtext(p_stream_id))
$$;

-- ------------------------------------------------------------
-- Chain enforcement (BEFORE INSERT)
-- ------------------------------------------------------------
CREATE FUNCTION public.ingress_attestations_link_chain()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  v_head     record;
  v_seq      bigint;
  v_computed text;
BEGIN
  -- Under READ COMMITTED each statement below takes a fresh snapshot after the lock is
  -- granted, so it sees the head committed by the writer we waited for.
  PERFORM public.lock_ingress_attestation_stream(NEW.stream_id);

  SELECT h.record_hash, h.stream_seq INTO v_head
    FROM public.ingress_attestation_stream_head(NEW.stream_id) h;

  IF NOT FOUND THEN
    IF NEW.prev_hash IS NOT NULL THEN
      RAISE EXCEPTION 'INV-ATT-HASH-CHAIN: stream % has no records yet, so prev_hash must be NULL (got %)', NEW.stream_id, NEW.prev_hash
        USING ERRCODE = 'P7301';
    END IF;
    v_seq := 1;
  ELSE
    IF NEW.prev_hash IS DISTINCT FROM v_head.record_hash THEN
      RAISE EXCEPTION 'INV-ATT-HASH-CHAIN: prev_hash % does not match the head of stream % (record % has record_hash %)',
        coalesce(NEW.prev_hash, 'NULL'), NEW.stream_id, v_head.stream_seq, v_head.record_hash
        USING ERRCODE = 'P7301',
              HINT = 'Another writer extended the stream first; write through record_ingress_attestation(), which links to the current head.';
    END IF;
    v_seq := v_head.stream_seq + 1;
  END IF;

  -- The position is the database's to assign; a writer that names another one is confused.
  IF NEW.stream_seq IS NOT NULL AND NEW.stream_seq <> v_seq THEN
    RAISE EXCEPTION 'INV-ATT-HASH-CHAIN: stream_seq % is not the next position % of stream %', NEW.stream_seq, v_seq, NEW.stream_id
      USING ERRCODE = 'P7301',
            HINT = 'Leave stream_seq NULL; the database assigns it.';
  END IF;
  NEW.stream_seq := v_seq;

  NEW.recorded_at := clock_timestamp();
  v_computed := encode(sha256(convert_to(public.ingress_attestation_canonical(NEW), 'UTF8')), 'hex');
  IF NEW.record_hash IS NOT NULL AND NEW.record_hash IS DISTINCT FROM v_computed THEN
    RAISE EXCEPTION 'INV-ATT-DB-HASH: record_hash is computed by the database; the supplied % does not match', NEW.record_hash
      USING ERRCODE = 'P7302',
            HINT = 'Leave record_hash NULL.';
  END IF;
  NEW.record_hash := v_computed;
  RETURN NEW;
END;
$$;

CREATE TRIGGER trg_ingress_attestations_link_chain
BEFORE INSERT ON public.ingress_attestations
FOR EACH ROW EXECUTE FUNCTION public.ingress_attestations_link_chain();

-- ------------------------------------------------------------
-- Append-only
-- ------------------------------------------------------------
CREATE FUNCTION public.ingress_attestations_deny_mutation()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  RAISE EXCEPTION 'INV-ATT-APPEND-ONLY: ingress_attestations is append-only; % is not allowed', TG_OP
    USING ERRCODE = 'P0001',
          HINT = 'Attestations are evidence: record a new attestation instead.';
END;
$$;

CREATE TRIGGER trg_ingress_attestations_deny_update_delete
BEFORE UPDATE OR DELETE ON public.ingress_attestations
FOR EACH ROW EXECUTE FUNCTION public.ingress_attestations_deny_mutation();

-- TRUNCATE bypasses row triggers, so it needs its own statement-level trigger.
CREATE TRIGGER trg_ingress_attestations_deny_truncate
BEFORE TRUNCATE ON public.ingress_attestations
FOR EACH STATEMENT EXECUTE FUNCTION public.ingress_attestations_deny_mutation();

-- ------------------------------------------------------------
-- The writer's entry point
-- ------------------------------------------------------------
-- Links the new record to the stream's current head under the stream lock and returns
-- where it landed. Run it under READ COMMITTED (the default); under REPEATABLE READ a
-- writer that lost the race to the head gets 23505 and must retry in a new transaction.
CREATE FUNCTION public.record_ingress_attestation(
  p_stream_id        text,
  p_request_id       text,
  p_instruction_id   text,
  p_participant_id   text,
  p_received_at      timestamptz,
  p_payload_sha256   text,
  p_auth_method      text,
  p_cert_fingerprint text,
  p_key_id           text,
  p_jti              text,
  p_decision         text,
  p_reason_code      text
)
RETURNS TABLE (
  attestation_id uuid,
  stream_seq     bigint,
  prev_hash      text,
  record_hash    text,
  recorded_at    timestamptz
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
  v_head_hash text;
BEGIN
  PERFORM public.lock_ingress_attestation_stream(p_stream_id);
  SELECT h.record_hash INTO v_head_hash FROM public.ingress_attestation_stream_head(p_stream_id) h;

  RETURN QUERY
  INSERT INTO public.ingress_attestations AS a (
    stream_id, prev_hash, request_id, instruction_id, participant_id, received_at,
    payload_sha256, auth_method, cert_fingerprint, key_id, jti, decision, reason_code
  )
  VALUES (
    p_stream_id, v_head_hash, p_request_id, p_instruction_id, p_participant_id, p_received_at,
    p_payload_sha256, p_auth_method, p_cert_fingerprint, p_key_id, p_jti, p_decision, p_reason_code
  )
  RETURNING a.attestation_id, a.stream_seq, a.prev_hash, a.record_hash, a.recorded_at;
END;
$$;

-- ------------------------------------------------------------
-- Privileges (revoke first)
-- ------------------------------------------------------------
REVOKE ALL ON TABLE public.ingress_attestations
  FROM PUBLIC, symphony_control, symphony_ingest, symphony_executor, symphony_readonly, symphony_auditor;
REVOKE ALL ON FUNCTION public.ingress_attestation_canonical(public.ingress_attestations) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.ingress_attestation_stream_head(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.lock_ingress_attestation_stream(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.ingress_attestations_link_chain() FROM PUBLIC;
REVOKE ALL ON FUNCTION public.ingress_attestations_deny_mutation() FROM PUBLIC;
REVOKE ALL ON FUNCTION public.record_ingress_attestation(
  text, text, text, text, timestamptz, text, text, text, text, text, text, text
) FROM PUBLIC, symphony_control, symphony_ingest, symphony_executor, symphony_readonly, symphony_auditor;

GRANT EXECUTE ON FUNCTION public.record_ingress_attestation(
  text, text, text, text, timestamptz, text, text, text, text, text, text, text
) TO symphony_ingest;
GRANT SELECT ON TABLE public.ingress_attestations TO symphony_readonly, symphony_auditor;
