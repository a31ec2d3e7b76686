-- 0048_pending_item_checked_per_statement.sql
-- A queued row still belongs to an enqueued item (INV-PENDING-ITEM), checked once per
-- enqueue statement instead of once per row (issue 9), as 0047 did for attempts.
--
-- 0020's foreign key fk_pending_item checked every queued row with a row trigger of its
-- own: a query through SPI per row that also locked the item row FOR KEY SHARE, the row the
-- same statement had just inserted. Measured with pg_stat_statements on one connection
-- enqueueing 40 batches of 500, two runs each way: enqueue_payment_outbox_batch took 22.50
-- and 22.07 ms per batch in the server with the key, 19.84 and 20.50 ms without it.
--
-- Item records are never updated, deleted or truncated (INV-ITEMS-APPEND-ONLY), so the lock
-- guarded nothing; the check that the item exists remains, for every writer:
--   * an AFTER INSERT statement trigger checks every inserted row in one anti-join (it fires
--     before trg_pending_notify: triggers of one event fire in name order);
--   * a row trigger on UPDATE OF outbox_id checks the new id. No function of the relayer
--     changes a queued row's id, and a trigger on that column alone costs the claims'
--     and completions' updates nothing (a statement trigger on every UPDATE would have run
--     on every claim).
-- A row for an item that was never enqueued is refused with 23503, as before.
ALTER TABLE public.payment_outbox_pending DROP CONSTRAINT fk_pending_item;

CREATE FUNCTION public.outbox_pending_check_items()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  v_orphan uuid;
BEGIN
  SELECT n.outbox_id INTO v_orphan
    FROM inserted_pending n
   WHERE NOT EXISTS (SELECT 1 FROM public.payment_outbox_items i WHERE i.outbox_id = n.outbox_id)
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'INV-PENDING-ITEM: a queued row names outbox item %, which was never enqueued; nothing of this statement was queued',
      v_orphan
      USING ERRCODE = '23503',
            HINT = 'Items are queued by the enqueue functions, which write the item record first.';
  END IF;
  RETURN NULL;
END;
$$;

REVOKE ALL ON FUNCTION public.outbox_pending_check_items() FROM PUBLIC;

CREATE TRIGGER trg_pending_belongs_to_item
AFTER INSERT ON public.payment_outbox_pending
REFERENCING NEW TABLE AS inserted_pending
FOR EACH STATEMENT EXECUTE FUNCTION public.outbox_pending_check_items();

CREATE FUNCTION public.outbox_pending_check_item()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM public.payment_outbox_items i WHERE i.outbox_id = NEW.outbox_id) THEN
    RAISE EXCEPTION 'INV-PENDING-ITEM: a queued row would name outbox item %, which was never enqueued',
      NEW.outbox_id
      USING ERRCODE = '23503',
            HINT = 'A queued row keeps the id of the item it was queued for.';
  END IF;
  RETURN NEW;
END;
$$;

REVOKE ALL ON FUNCTION public.outbox_pending_check_item() FROM PUBLIC;

CREATE TRIGGER trg_pending_keeps_an_item
BEFORE UPDATE OF outbox_id ON public.payment_outbox_pending
FOR EACH ROW WHEN (OLD.outbox_id IS DISTINCT FROM NEW.outbox_id)
EXECUTE FUNCTION public.outbox_pending_check_item();
