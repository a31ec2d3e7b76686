-- 0003_roles.sql
-- The five NOLOGIN runtime roles. Services connect with their own LOGIN role (created by
-- the operator, never by a migration, never with a password here) that is a member of one
-- of these and runs SET ROLE. (`symphony_auth` is deliberately not a role.)
--
-- Roles are cluster-global while migrations run per database, so this file must be safe
-- when the roles already exist and when several databases of one cluster are migrated at
-- the same time:
--   * CREATE ROLE tolerates losing the race to a concurrent runner (duplicate_object /
--     unique_violation on pg_authid);
--   * ALTER ROLE runs only when an attribute differs, because two concurrent ALTERs of the
--     same pg_authid row fail with "tuple concurrently updated";
--   * COMMENT ON ROLE likewise only when the comment differs.
-- Privileges are granted in 0004 and by each later migration for what it creates.

DO $$
DECLARE
  v_role    record;
  v_current record;
BEGIN
  FOR v_role IN
    SELECT *
      FROM (VALUES
        ('symphony_control',  'Control plane: policy rotation, revocations, read access and table maintenance (VACUUM/ANALYZE) on the outbox; no direct outbox writes.'),
        ('symphony_ingest',   'Ingest: enqueues payment instructions and records ingress attestations, through functions only.'),
        ('symphony_executor', 'Executor (the relayer): claims, completes and repairs outbox items through functions only; reads the ACTIVE policy.'),
        ('symphony_readonly', 'Read plane: SELECT on the outbox queue and attempt ledger for reporting.'),
        ('symphony_auditor',  'Auditors/regulators: SELECT on ledgers (attempts, attestations, revocations, policies).')
      ) AS r(name, description)
  LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = v_role.name) THEN
      BEGIN
        EXECUTE format('CREATE ROLE %I NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS',
                       v_role.name);
      EXCEPTION
        WHEN duplicate_object OR unique_violation THEN
          NULL; -- another database's migration created it first; the checks below still apply
      END;
    END IF;

    SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls
      INTO v_current
      FROM pg_catalog.pg_roles
     WHERE rolname = v_role.name;

    -- A pre-existing role someone made able to log in, or privileged, is forced back.
    IF v_current.rolcanlogin OR v_current.rolsuper OR v_current.rolcreatedb
       OR v_current.rolcreaterole OR v_current.rolreplication OR v_current.rolbypassrls THEN
      RAISE NOTICE 'role % had login or elevated attributes; forcing it back to NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE', v_role.name;
      EXECUTE format('ALTER ROLE %I NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS',
                     v_role.name);
    END IF;

    IF pg_catalog.shobj_description(
         (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = v_role.name), 'pg_authid')
       IS DISTINCT FROM v_role.description THEN
      EXECUTE format('COMMENT ON ROLE %I IS %L', v_role.name, v_role.description);
    END IF;
  END LOOP;
END
$$;

-- A runtime role that is itself a member of another role (e.g. pg_read_all_data,
-- pg_write_all_data, or a superuser-ish admin role) would inherit privileges no grant in
-- this schema shows. Refuse to continue rather than silently revoke a cluster-wide grant
-- an operator made: the migration fails and names the membership to remove.
DO $$
DECLARE
  v_memberships text;
BEGIN
  SELECT string_agg(format('%s is a member of %s', m.rolname, g.rolname), '; ' ORDER BY m.rolname, g.rolname)
    INTO v_memberships
    FROM pg_catalog.pg_auth_members am
    JOIN pg_catalog.pg_roles m ON m.oid = am.member
    JOIN pg_catalog.pg_roles g ON g.oid = am.roleid
   WHERE m.rolname IN ('symphony_control', 'symphony_ingest', 'symphony_executor',
                       'symphony_readonly', 'symphony_auditor');
  IF v_memberships IS NOT NULL THEN
    RAISE EXCEPTION 'runtime roles must not be members of other roles: %', v_memberships
      USING ERRCODE = '55000',
            HINT = 'REVOKE those memberships (runtime roles get their privileges only from grants in the migrations), then migrate again.';
  END IF;
END
$$;
