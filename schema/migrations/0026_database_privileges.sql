-- 0026_database_privileges.sql
-- No temporary objects and no large objects for the runtime roles (issue 12).
--
-- 0004 locked down schema public; the database itself kept PostgreSQL's defaults: PUBLIC
-- may CONNECT and create TEMPORARY tables, and every role may create large objects, which
-- outlive the session and sit outside every schema privilege (a 64 MB large object made
-- by ingest stayed behind). The runtime roles need neither: they call functions.
--
--   * TEMPORARY on this database is revoked from PUBLIC (and from each runtime role, in
--     case an operator granted it). CONNECT stays with PUBLIC: logins are how services
--     reach the database at all, and a login without a runtime role can do nothing here.
--   * Large-object creation: EXECUTE on lo_create, lo_creat and lo_from_bytea is revoked
--     from PUBLIC in this database (pg_proc is per database; other databases of the
--     cluster keep their defaults). Every other large-object function acts on an existing
--     object and is checked against that object's own privileges; lo_import / lo_export
--     are superuser-only already. The client-side lo_import of libpq calls lo_creat.
--
-- A migration cannot name its database, so the first statement is dynamic.
-- REVOKE on pg_catalog functions needs a superuser (their owner); run by anyone else it
-- only warns, and the privilege-matrix check (src/db/privilege-matrix.ts) reports the
-- grant that is still there.

DO $$
BEGIN
  EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
  EXECUTE format(
    'REVOKE TEMPORARY ON DATABASE %I FROM symphony_control, symphony_ingest, symphony_executor, symphony_readonly, symphony_auditor',
    current_database());
END
$$;

REVOKE EXECUTE ON FUNCTION
  pg_catalog.lo_create(oid),
  pg_catalog.lo_creat(integer),
  pg_catalog.lo_from_bytea(oid, bytea)
  FROM PUBLIC;
