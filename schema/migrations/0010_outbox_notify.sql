-- 0010_outbox_notify.sql
-- Wake-up signal on channel outbox_pending when work is enqueued. The payload is empty on
-- purpose: a notification only means "claim now"; workers never trust it for content.
-- NOTIFY is delivered at commit (nothing for a rolled-back enqueue) and identical
-- notifications in one transaction are folded into one. The trigger is per statement, so
-- a multi-row insert notifies once; the transition table skips statements that inserted
-- nothing.
CREATE FUNCTION public.notify_outbox_pending()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM inserted_rows) THEN
    PERFORM pg_notify('outbox_pending', '');
  END IF;
  RETURN NULL;
END;
$$;

CREATE TRIGGER trg_pending_notify
AFTER INSERT ON public.payment_outbox_pending
REFERENCING NEW TABLE AS inserted_rows
FOR EACH STATEMENT EXECUTE FUNCTION public.notify_outbox_pending();
