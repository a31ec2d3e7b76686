-- 0028_control_and_attestation_writes.sql
-- What control and ingest write is checked by the database, not trusted (issue 12).
--
-- Control (symphony_control):
--   * may no longer LOCK the queue: MAINTAIN (which carries LOCK TABLE in every mode) is
--     revoked on payment_outbox_pending, payment_outbox_attempts, payment_outbox_items
--     and participant_outbox_sequences. SELECT stays (it only allows ACCESS SHARE, which
--     no producer or worker statement waits for). Autovacuum maintains these tables.
--   * its policy and revocation rows carry server-set times and its own name:
--       P7104 INV-POL-INSERT-ACTIVE     a policy enters as ACTIVE (GRACE and RETIRED are
--                                       reached by rotation, never inserted)
--       P7105 INV-POL-CHECKSUM-FORMAT   checksum is a lowercase hex sha256
--       P7106 INV-CONTROL-SERVER-TIME   created_at/updated_at of a policy are the server's
--       P7203 INV-CONTROL-SERVER-TIME   revoked_at of a revocation is the server's
--       P7204 INV-REV-AUTHOR            revoked_by is the session user (its new default)
--     These apply to every session whose login is not the schema owner (or a superuser):
--     the owner can rewrite history in any case (it can disable triggers), so checking it
--     would only get in the way of repairs.
--
-- Ingest (record_ingress_attestation), and any writer of ingress_attestations:
--   * P7303 INV-ATT-RECEIVED-AT: received_at is finite and within [database clock − 1 hour,
--     database clock + 5 minutes]: a request is attested while it is handled, and 5 minutes
--     absorb clock skew between the ingress host and the database.
--   * P7304 INV-ATT-STREAM-WRITER: a stream belongs to the login that wrote its first
--     record from this migration on (column writer = session_user); another login gets
--     P7304. Streams begun before this migration (writer NULL) pass to the first login
--     that extends them.
--   * the hash chain encodes received_at and recorded_at losslessly (hash_version 2: exact
--     epoch seconds with microseconds, 'Infinity'/'-Infinity', negative before 1970, so a
--     BC date or an infinity can no longer render like another instant), and covers writer
--     and hash_version. Rows written before keep hash_version 1 and their v1 encoding, so
--     their chains still verify.

-- ------------------------------------------------------------
-- Control: no LOCK on the queue
-- ------------------------------------------------------------
REVOKE MAINTAIN ON TABLE
  public.payment_outbox_pending,
  public.payment_outbox_attempts,
  public.payment_outbox_items,
  public.participant_outbox_sequences
  FROM symphony_control;

-- ------------------------------------------------------------
-- Control: server-set times, session user as author, format checks
-- ------------------------------------------------------------
CREATE FUNCTION public.policy_versions_validate_insert()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  -- The owner's login (or a superuser) may write anything: it could disable this trigger.
  IF pg_has_role(session_user, 'symphony_owner', 'USAGE') THEN
    RETURN NEW;
  END IF;
  IF NEW.status IS DISTINCT FROM 'ACTIVE' THEN
    RAISE EXCEPTION 'INV-POL-INSERT-ACTIVE: a policy is inserted as ACTIVE, not % (GRACE and RETIRED are reached by rotating an ACTIVE policy)', NEW.status
      USING ERRCODE = 'P7104',
            HINT = 'Insert the new policy as ACTIVE after moving the current one to GRACE.';
  END IF;
  IF NEW.checksum !~ '^[0-9a-f]{64}$' THEN
    RAISE EXCEPTION 'INV-POL-CHECKSUM-FORMAT: policy checksum must be the lowercase hex sha256 of the canonical policy JSON (64 characters 0-9a-f)'
      USING ERRCODE = 'P7105',
            HINT = 'Seed policies with ''symphony-relay policy seed --file <policy.json>'', which computes it.';
  END IF;
  IF NEW.created_at IS DISTINCT FROM now() OR NEW.updated_at IS DISTINCT FROM now() THEN
    RAISE EXCEPTION 'INV-CONTROL-SERVER-TIME: created_at and updated_at of a policy are set by the database; leave them out'
      USING ERRCODE = 'P7106';
  END IF;
  RETURN NEW;
END;
$$;

CREATE TRIGGER trg_policy_versions_validate_insert
BEFORE INSERT ON public.policy_versions
FOR EACH ROW EXECUTE FUNCTION public.policy_versions_validate_insert();

ALTER TABLE public.revoked_client_certs ALTER COLUMN revoked_by SET DEFAULT session_user;
ALTER TABLE public.revoked_tokens ALTER COLUMN revoked_by SET DEFAULT session_user;

CREATE FUNCTION public.revocations_validate_author()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  -- The owner's login (or a superuser) may write anything: it could disable this trigger.
  IF pg_has_role(session_user, 'symphony_owner', 'USAGE') THEN
    RETURN NEW;
  END IF;
  IF NEW.revoked_at IS DISTINCT FROM now() THEN
    RAISE EXCEPTION 'INV-CONTROL-SERVER-TIME: %.revoked_at is set by the database (the time of the revocation); leave it out', TG_TABLE_NAME
      USING ERRCODE = 'P7203';
  END IF;
  IF NEW.revoked_by IS DISTINCT FROM session_user THEN
    RAISE EXCEPTION 'INV-REV-AUTHOR: %.revoked_by is the login that records the revocation (%); leave it out', TG_TABLE_NAME, session_user
      USING ERRCODE = 'P7204';
  END IF;
  RETURN NEW;
END;
$$;

CREATE TRIGGER trg_revoked_client_certs_validate_author
BEFORE INSERT ON public.revoked_client_certs
FOR EACH ROW EXECUTE FUNCTION public.revocations_validate_author();

CREATE TRIGGER trg_revoked_tokens_validate_author
BEFORE INSERT ON public.revoked_tokens
FOR EACH ROW EXECUTE FUNCTION public.revocations_validate_author();

-- ------------------------------------------------------------
-- Ingress attestations: writer, bound on received_at, lossless hash (v2)
-- ------------------------------------------------------------
-- Added without a default first, so no existing row is rewritten (the table is
-- append-only) and the old rows read writer NULL and hash_version 1.
ALTER TABLE public.ingress_attestations ADD COLUMN writer text;
ALTER TABLE public.ingress_attestations ADD COLUMN hash_version smallint NOT NULL DEFAULT 1;
ALTER TABLE public.ingress_attestations ALTER COLUMN hash_version SET DEFAULT 2;
ALTER TABLE public.ingress_attestations
  ADD CONSTRAINT ck_attestation_hash_version CHECK (hash_version IN (1, 2)),
  ADD CONSTRAINT ck_attestation_v2_has_writer CHECK (hash_version = 1 OR writer IS NOT NULL);

COMMENT ON COLUMN public.ingress_attestations.writer IS
  'The login (session_user) that wrote the record; a stream belongs to the writer of its latest record. NULL before 0028.';
COMMENT ON COLUMN public.ingress_attestations.hash_version IS
  '1: 0011''s encoding (received_at rendered to the microsecond, ambiguous for BC and infinite times); 2: exact epoch encoding, covering writer.';

CREATE OR REPLACE FUNCTION public.ingress_attestation_canonical(a public.ingress_attestations)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT CASE a.hash_version
    WHEN 1 THEN (
      SELECT 'symphony.ingress_attestation.v1' || string_agg(
               '|' || CASE WHEN f.value IS NULL THEN '-'
                           ELSE octet_length(convert_to(f.value, 'UTF8'))::text || ':' || f.value END,
               '' ORDER BY f.ord)
        FROM unnest(ARRAY[
               a.attestation_id::text, a.stream_id, a.stream_seq::text, a.prev_hash, a.request_id,
               a.instruction_id, a.participant_id,
               to_char(a.received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
               to_char(a.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
               a.payload_sha256, a.auth_method, a.cert_fingerprint, a.key_id, a.jti, a.decision,
               a.reason_code
             ]) WITH ORDINALITY AS f(value, ord))
    ELSE (
      -- Times as exact epoch seconds (numeric, microseconds): one text per instant,
      -- 'Infinity' and '-Infinity' distinct from every finite one.
      SELECT 'symphony.ingress_attestation.v2' || string_agg(
               '|' || CASE WHEN f.value IS NULL THEN '-'
                           ELSE octet_length(convert_to(f.value, 'UTF8'))::text || ':' || f.value END,
               '' ORDER BY f.ord)
        FROM unnest(ARRAY[
               a.hash_version::text, a.attestation_id::text, a.stream_id, a.stream_seq::text,
               a.prev_hash, a.writer, a.request_id, a.instruction_id, a.participant_id,
               extract(epoch FROM a.received_at)::text,
               extract(epoch FROM a.recorded_at)::text,
               a.payload_sha256, a.auth_method, a.cert_fingerprint, a.key_id, a.jti, a.decision,
               a.reason_code
             ]) WITH ORDINALITY AS f(value, ord))
  END
$$;

CREATE OR REPLACE FUNCTION public.ingress_attestations_link_chain()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  v_head     record;
  v_writer   text;
  v_seq      bigint;
  v_computed text;
  v_now      timestamptz := clock_timestamp();
BEGIN
  IF NEW.received_at IS NULL OR NOT isfinite(NEW.received_at)
     OR NEW.received_at < v_now - interval '1 hour'
     OR NEW.received_at > v_now + interval '5 minutes' THEN
    RAISE EXCEPTION 'INV-ATT-RECEIVED-AT: received_at % is outside [database time - 1 hour, database time + 5 minutes] (database time %)',
      NEW.received_at, v_now
      USING ERRCODE = 'P7303',
            HINT = 'Record the attestation while the request is handled, with the time it was received; check the ingress host''s clock.';
  END IF;

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
    SELECT a.writer INTO v_writer
      FROM public.ingress_attestations a
     WHERE a.stream_id = NEW.stream_id AND a.stream_seq = v_head.stream_seq;
    IF v_writer IS DISTINCT FROM session_user AND v_writer IS NOT NULL THEN
      RAISE EXCEPTION 'INV-ATT-STREAM-WRITER: stream % belongs to another login; % may not extend it', NEW.stream_id, session_user
        USING ERRCODE = 'P7304',
              HINT = 'Each ingress login writes its own streams: name the stream after the writer (for example <login>/<shard>).';
    END IF;
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

  NEW.writer := session_user;
  NEW.hash_version := 2;
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

REVOKE ALL ON FUNCTION
  public.policy_versions_validate_insert(),
  public.revocations_validate_author()
  FROM PUBLIC;
