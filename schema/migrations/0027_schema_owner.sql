-- 0027_schema_owner.sql
-- A dedicated NOLOGIN, non-superuser role owns the schema's objects (issue 12).
--
-- Until now every object belonged to whichever login ran `migrate`; the compose stack
-- migrates as the superuser, so each SECURITY DEFINER function ran as a superuser and any
-- future definer bug would have been a full compromise of the cluster. From here on the
-- runner (src/db/migrate/ownership.ts) hands every table, sequence, view, function and
-- type of schema public to symphony_owner at the end of each migration, this one
-- included, whoever ran it: the definer functions then run as symphony_owner, which can
-- do no more than own this schema.
--
-- symphony_owner: NOLOGIN, no attributes, member of nothing; USAGE on schema public so
-- its functions can name their tables. No login is made a member of it here (a superuser
-- needs no membership to hand objects over). A non-superuser migrating login must be
-- able to SET ROLE symphony_owner: this migration grants that to it when it has ADMIN on
-- the role (as the creator of the role it does), and fails with a clear message otherwise.

DO $$
DECLARE
  v_current record;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'symphony_owner') THEN
    BEGIN
      CREATE ROLE symphony_owner NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
    EXCEPTION
      WHEN duplicate_object OR unique_violation THEN
        NULL; -- another database's migration created it first; the checks below still apply
    END;
  END IF;

  SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls
    INTO v_current
    FROM pg_catalog.pg_roles
   WHERE rolname = 'symphony_owner';
  IF v_current.rolcanlogin OR v_current.rolsuper OR v_current.rolcreatedb
     OR v_current.rolcreaterole OR v_current.rolreplication OR v_current.rolbypassrls THEN
    RAISE NOTICE 'role symphony_owner had login or elevated attributes; forcing it back';
    ALTER ROLE symphony_owner NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
  END IF;

  IF pg_catalog.shobj_description(
       (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = 'symphony_owner'), 'pg_authid')
     IS DISTINCT FROM 'Owner of the symphony-relay schema: its SECURITY DEFINER functions run as this role. NOLOGIN; nobody acts as it.' THEN
    COMMENT ON ROLE symphony_owner IS
      'Owner of the symphony-relay schema: its SECURITY DEFINER functions run as this role. NOLOGIN; nobody acts as it.';
  END IF;
END
$$;

-- Like the runtime roles (0003), the owner must not inherit privileges no grant here shows.
DO $$
DECLARE
  v_memberships text;
BEGIN
  SELECT string_agg(g.rolname, ', ' ORDER BY g.rolname)
    INTO v_memberships
    FROM pg_catalog.pg_auth_members am
    JOIN pg_catalog.pg_roles g ON g.oid = am.roleid
   WHERE am.member = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = 'symphony_owner');
  IF v_memberships IS NOT NULL THEN
    RAISE EXCEPTION 'symphony_owner must not be a member of other roles: it is a member of %', v_memberships
      USING ERRCODE = '55000',
            HINT = 'REVOKE those memberships from symphony_owner, then migrate again.';
  END IF;
END
$$;

-- A non-superuser migrating login hands objects over by being able to SET ROLE to the
-- owner (PostgreSQL's rule for ALTER ... OWNER TO); a superuser needs nothing.
DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)
     AND NOT pg_catalog.pg_has_role(current_user, 'symphony_owner', 'SET') THEN
    BEGIN
      EXECUTE format('GRANT symphony_owner TO %I WITH INHERIT TRUE, SET TRUE', current_user);
    EXCEPTION
      WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'the migrating login % cannot hand the schema to symphony_owner: it is not a superuser and cannot SET ROLE symphony_owner', current_user
          USING ERRCODE = '42501',
                HINT = 'As a superuser: GRANT symphony_owner TO ' || quote_ident(current_user) || ' WITH INHERIT TRUE, SET TRUE; then migrate again.';
    END;
  END IF;
END
$$;

REVOKE ALL ON SCHEMA public FROM symphony_owner;
GRANT USAGE ON SCHEMA public TO symphony_owner;
