-- 0005_policy_versions.sql
-- Policy governance. Each row is one version of the platform policy, identified by its
-- version string and the sha256 of its canonical JSON (computed by `policy seed`, which is
-- a CLI command, not a migration). Lifecycle, forward only:
--
--   ACTIVE ──► GRACE ──► RETIRED          (no way back, no skipping GRACE, no deletes)
--
-- Exactly one ACTIVE row at a time (unique partial index, 23505). A rotation therefore
-- demotes the current ACTIVE row to GRACE and then inserts the new ACTIVE row, in one
-- transaction; a deferred constraint trigger checks at COMMIT that an ACTIVE row still
-- exists (P7103), so the demotion alone can never be committed.
--
-- SQLSTATEs (messages start with the invariant id):
--   P7101 INV-POL-FORWARD-ONLY invalid status transition
--   P7102 INV-POL-NO-DELETE DELETE / TRUNCATE forbidden
--   P7103 INV-POL-LAST-ACTIVE the last ACTIVE policy cannot be demoted without a successor
--   P0001 INV-POL-IMMUTABLE-CONTENT version, checksum and created_at are immutable
--   23505 INV-POL-SINGLE-ACTIVE a second ACTIVE row
--   23514 INV-POL-CHECKSUM / INV-POL-GRACE-EXPIRY empty checksum; grace_expires_at missing on GRACE or set on ACTIVE

CREATE TABLE public.policy_versions (
  version          TEXT PRIMARY KEY,
  status           TEXT NOT NULL,
  -- Kept for the relayer's boot query (`WHERE is_active`); always derived from status.
  is_active        BOOLEAN GENERATED ALWAYS AS (status = 'ACTIVE') STORED,
  checksum         TEXT NOT NULL,
  grace_expires_at TIMESTAMPTZ,
  created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),

  CONSTRAINT ck_policy_version_not_blank CHECK (length(btrim(version)) > 0),
  CONSTRAINT ck_policy_status CHECK (status IN ('ACTIVE', 'GRACE', 'RETIRED')),
  CONSTRAINT ck_policy_checksum_not_empty CHECK (length(checksum) > 0),
  CONSTRAINT ck_policy_grace_requires_expiry CHECK (status <> 'GRACE' OR grace_expires_at IS NOT NULL),
  CONSTRAINT ck_policy_active_has_no_grace_expiry CHECK (status <> 'ACTIVE' OR grace_expires_at IS NULL)
);

-- Exactly one ACTIVE: every ACTIVE row has the same index key. Unique indexes are not
-- deferrable, which is why a rotation demotes before it inserts.
CREATE UNIQUE INDEX ux_policy_versions_single_active
  ON public.policy_versions ((true))
  WHERE status = 'ACTIVE';

COMMENT ON TABLE public.policy_versions IS
  'Policy versions: ACTIVE -> GRACE -> RETIRED, exactly one ACTIVE, no deletes. Seeded by the CLI (policy seed), never by a migration.';
COMMENT ON COLUMN public.policy_versions.checksum IS
  'sha256 (lowercase hex) of the canonical JSON of the policy document (sorted keys, no whitespace).';

-- ------------------------------------------------------------
-- Transitions and immutability (BEFORE UPDATE)
-- ------------------------------------------------------------
CREATE FUNCTION public.policy_versions_enforce_update()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  IF NEW.version IS DISTINCT FROM OLD.version
     OR NEW.checksum IS DISTINCT FROM OLD.checksum
     OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
    RAISE EXCEPTION 'INV-POL-IMMUTABLE-CONTENT: policy % is immutable: version, checksum and created_at cannot change', OLD.version
      USING ERRCODE = 'P0001',
            HINT = 'Publish the changed policy as a new version and rotate to it.';
  END IF;

  IF NOT (
       NEW.status = OLD.status
    OR (OLD.status = 'ACTIVE' AND NEW.status = 'GRACE')
    OR (OLD.status = 'GRACE' AND NEW.status = 'RETIRED')
  ) THEN
    RAISE EXCEPTION 'INV-POL-FORWARD-ONLY: invalid policy status transition % -> % for policy %', OLD.status, NEW.status, OLD.version
      USING ERRCODE = 'P7101',
            HINT = 'Policies only move forward: ACTIVE -> GRACE -> RETIRED. To activate another policy, insert it as a new ACTIVE version.';
  END IF;

  -- A retired policy is history: not even its grace expiry may be rewritten.
  IF OLD.status = 'RETIRED' AND NEW.grace_expires_at IS DISTINCT FROM OLD.grace_expires_at THEN
    RAISE EXCEPTION 'INV-POL-FORWARD-ONLY: policy % is RETIRED and cannot change', OLD.version
      USING ERRCODE = 'P7101';
  END IF;

  NEW.updated_at := now();
  RETURN NEW;
END;
$$;

CREATE TRIGGER trg_policy_versions_enforce_update
BEFORE UPDATE ON public.policy_versions
FOR EACH ROW EXECUTE FUNCTION public.policy_versions_enforce_update();

-- ------------------------------------------------------------
-- No DELETE, no TRUNCATE
-- ------------------------------------------------------------
CREATE FUNCTION public.policy_versions_deny_delete()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  RAISE EXCEPTION 'INV-POL-NO-DELETE: policy versions are never removed (% refused)', TG_OP
    USING ERRCODE = 'P7102',
          HINT = 'Move the policy forward to RETIRED instead.';
END;
$$;

CREATE TRIGGER trg_policy_versions_deny_delete
BEFORE DELETE ON public.policy_versions
FOR EACH ROW EXECUTE FUNCTION public.policy_versions_deny_delete();

-- TRUNCATE bypasses row triggers, so it needs its own statement-level trigger.
CREATE TRIGGER trg_policy_versions_deny_truncate
BEFORE TRUNCATE ON public.policy_versions
FOR EACH STATEMENT EXECUTE FUNCTION public.policy_versions_deny_delete();

-- ------------------------------------------------------------
-- Never commit the demotion of the last ACTIVE policy (deferred to COMMIT)
-- ------------------------------------------------------------
-- Checked at commit, not per statement, so that a rotation (demote, then insert the
-- successor) can happen inside one transaction. Zero ACTIVE rows before any policy was
-- ever seeded is allowed: the relayer refuses to start in that state instead.
CREATE FUNCTION public.policy_versions_require_active()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM public.policy_versions WHERE status = 'ACTIVE') THEN
    RAISE EXCEPTION 'INV-POL-LAST-ACTIVE: demoting policy % would leave no ACTIVE policy', OLD.version
      USING ERRCODE = 'P7103',
            HINT = 'In the same transaction, insert the successor policy as ACTIVE after demoting the current one.';
  END IF;
  RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER trg_policy_versions_require_active
AFTER UPDATE ON public.policy_versions
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW
WHEN (OLD.status = 'ACTIVE' AND NEW.status <> 'ACTIVE')
EXECUTE FUNCTION public.policy_versions_require_active();

-- ------------------------------------------------------------
-- Privileges (revoke first)
-- ------------------------------------------------------------
REVOKE ALL ON TABLE public.policy_versions
  FROM PUBLIC, symphony_control, symphony_ingest, symphony_executor, symphony_readonly, symphony_auditor;
REVOKE ALL ON FUNCTION public.policy_versions_enforce_update() FROM PUBLIC;
REVOKE ALL ON FUNCTION public.policy_versions_deny_delete() FROM PUBLIC;
REVOKE ALL ON FUNCTION public.policy_versions_require_active() FROM PUBLIC;

-- The relayer's boot check reads the ACTIVE policy.
GRANT SELECT ON TABLE public.policy_versions TO symphony_executor;
-- Seeding and rotation.
GRANT SELECT, INSERT, UPDATE ON TABLE public.policy_versions TO symphony_control;
GRANT SELECT ON TABLE public.policy_versions TO symphony_readonly, symphony_auditor;
