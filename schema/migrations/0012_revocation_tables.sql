-- 0012_revocation_tables.sql
-- Durable deny lists checked at ingress: revoked client certificates (by sha256
-- fingerprint) and revoked tokens (by sha256 of the token, never the token itself).
-- An overlay on top of PKI revocation (CRL/OCSP), not a replacement for it.
--
-- Append-only: a revocation is evidence. To lift or change one, an operator records a
-- new row (e.g. a later expiry); history is never rewritten.
--
-- SQLSTATEs (messages start with the invariant id):
--   P0001 INV-REV-APPEND-ONLY UPDATE / DELETE / TRUNCATE
--   23514 INV-REV-EXPIRY expires_at earlier than revoked_at
--   P7201 INV-REV-TOKEN-HASH token_hash is not a lowercase hex sha256
--   P7202 INV-REV-CERT-FINGERPRINT cert_fingerprint is not a lowercase hex sha256

CREATE TABLE public.revoked_client_certs (
  revocation_id    UUID PRIMARY KEY DEFAULT uuidv7(),
  cert_fingerprint TEXT NOT NULL,
  revoked_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
  -- NULL: revoked for good. Otherwise the entry stops mattering after this instant
  -- (typically the certificate's own notAfter).
  expires_at       TIMESTAMPTZ,
  reason_code      TEXT NOT NULL,
  revoked_by       TEXT NOT NULL,
  CONSTRAINT ck_revoked_client_certs_expiry CHECK (expires_at IS NULL OR expires_at >= revoked_at),
  CONSTRAINT ck_revoked_client_certs_reason_not_blank CHECK (length(btrim(reason_code)) > 0),
  CONSTRAINT ck_revoked_client_certs_revoked_by_not_blank CHECK (length(btrim(revoked_by)) > 0)
);

CREATE INDEX ix_revoked_client_certs_fingerprint ON public.revoked_client_certs (cert_fingerprint);

CREATE TABLE public.revoked_tokens (
  revocation_id UUID PRIMARY KEY DEFAULT uuidv7(),
  token_hash    TEXT NOT NULL,
  revoked_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
  -- NULL: revoked for good. Otherwise typically the token's own exp.
  expires_at    TIMESTAMPTZ,
  reason_code   TEXT NOT NULL,
  revoked_by    TEXT NOT NULL,
  CONSTRAINT ck_revoked_tokens_expiry CHECK (expires_at IS NULL OR expires_at >= revoked_at),
  CONSTRAINT ck_revoked_tokens_reason_not_blank CHECK (length(btrim(reason_code)) > 0),
  CONSTRAINT ck_revoked_tokens_revoked_by_not_blank CHECK (length(btrim(revoked_by)) > 0)
);

CREATE INDEX ix_revoked_tokens_token_hash ON public.revoked_tokens (token_hash);

COMMENT ON TABLE public.revoked_client_certs IS
  'Append-only deny list of client certificates by sha256 fingerprint (lowercase hex).';
COMMENT ON TABLE public.revoked_tokens IS
  'Append-only deny list of tokens by sha256 of the token (lowercase hex); raw tokens are never stored.';

-- ------------------------------------------------------------
-- Input format (a trigger, not a CHECK, so the SQLSTATE names the rule)
-- ------------------------------------------------------------
-- A hash in the wrong form (uppercase, base64, the raw token) would never match the
-- lookup, silently leaving the credential usable: refuse it loudly.
CREATE FUNCTION public.revocations_validate_input()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  -- Nested IFs: a field of NEW is resolved only on the branch for its own table.
  IF TG_TABLE_NAME = 'revoked_tokens' THEN
    IF NEW.token_hash !~ '^[0-9a-f]{64}$' THEN
      RAISE EXCEPTION 'INV-REV-TOKEN-HASH: revoked_tokens.token_hash must be the lowercase hex sha256 of the token (64 characters 0-9a-f)'
        USING ERRCODE = 'P7201',
              HINT = 'Store encode(sha256(token), ''hex''), never the token itself.';
    END IF;
  ELSIF TG_TABLE_NAME = 'revoked_client_certs' THEN
    IF NEW.cert_fingerprint !~ '^[0-9a-f]{64}$' THEN
      RAISE EXCEPTION 'INV-REV-CERT-FINGERPRINT: revoked_client_certs.cert_fingerprint must be the lowercase hex sha256 fingerprint of the certificate (64 characters 0-9a-f, no colons)'
        USING ERRCODE = 'P7202';
    END IF;
  END IF;
  RETURN NEW;
END;
$$;

CREATE TRIGGER trg_revoked_tokens_validate_input
BEFORE INSERT ON public.revoked_tokens
FOR EACH ROW EXECUTE FUNCTION public.revocations_validate_input();

CREATE TRIGGER trg_revoked_client_certs_validate_input
BEFORE INSERT ON public.revoked_client_certs
FOR EACH ROW EXECUTE FUNCTION public.revocations_validate_input();

-- ------------------------------------------------------------
-- Append-only
-- ------------------------------------------------------------
CREATE FUNCTION public.revocations_deny_mutation()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  RAISE EXCEPTION 'INV-REV-APPEND-ONLY: % is append-only; % is not allowed', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'P0001',
          HINT = 'Record a new revocation row instead of changing or removing one.';
END;
$$;

CREATE TRIGGER trg_revoked_client_certs_deny_update_delete
BEFORE UPDATE OR DELETE ON public.revoked_client_certs
FOR EACH ROW EXECUTE FUNCTION public.revocations_deny_mutation();

-- TRUNCATE bypasses row triggers, so each table needs a statement-level trigger too.
CREATE TRIGGER trg_revoked_client_certs_deny_truncate
BEFORE TRUNCATE ON public.revoked_client_certs
FOR EACH STATEMENT EXECUTE FUNCTION public.revocations_deny_mutation();

CREATE TRIGGER trg_revoked_tokens_deny_update_delete
BEFORE UPDATE OR DELETE ON public.revoked_tokens
FOR EACH ROW EXECUTE FUNCTION public.revocations_deny_mutation();

CREATE TRIGGER trg_revoked_tokens_deny_truncate
BEFORE TRUNCATE ON public.revoked_tokens
FOR EACH STATEMENT EXECUTE FUNCTION public.revocations_deny_mutation();

-- ------------------------------------------------------------
-- Privileges (revoke first): control records revocations, the read plane reads them
-- ------------------------------------------------------------
REVOKE ALL ON TABLE public.revoked_client_certs, public.revoked_tokens
  FROM PUBLIC, symphony_control, symphony_ingest, symphony_executor, symphony_readonly, symphony_auditor;
REVOKE ALL ON FUNCTION public.revocations_validate_input() FROM PUBLIC;
REVOKE ALL ON FUNCTION public.revocations_deny_mutation() FROM PUBLIC;

GRANT SELECT, INSERT ON TABLE public.revoked_client_certs, public.revoked_tokens TO symphony_control;
GRANT SELECT ON TABLE public.revoked_client_certs, public.revoked_tokens TO symphony_readonly, symphony_auditor;
