-- 0047_attempts_item_checked_per_statement.sql
-- An attempt still names an enqueued item (INV-ATTEMPTS-ITEM-FK), checked once per
-- statement instead of once per row (issue 9).
--
-- 0020's foreign key fk_attempts_item checked every appended attempt with a row trigger of
-- its own: a query through SPI per row that also locked the item row FOR KEY SHARE, which
-- writes to the item's heap page and to the WAL. Measured with pg_stat_statements on one
-- connection recording 36 batches of 256 outcomes from a queue of 20,000 (after 0046), three
-- runs each way: complete_outbox_batch took 8.97, 8.69 and 10.56 ms per batch with the key,
-- 7.86, 7.77 and 8.24 with this check; backend CPU per item (from /proc) 38.0, 38.0 and
-- 45.6 µs against 34.7, 36.9 and 35.8.
--
-- The lock guarded against the item being deleted before the attempt commits, which cannot
-- happen: item records are never updated, deleted or truncated, not even by the owner
-- (INV-ITEMS-APPEND-ONLY). What remains of the key's job is the check that the item exists,
-- and an AFTER INSERT statement trigger does it for all the appended rows in one anti-join,
-- whoever writes them (completion, repair, the owner). An attempt for an item that was never
-- enqueued is refused with 23503, as before; the trigger fires before the drive check
-- (triggers of one event fire in name order), so such an attempt is reported as what it is.
--
-- Visibility is no weaker: the check reads the items committed before the statement and
-- those of its own transaction. An item inserted by a transaction that has not committed is
-- refused where the key would have waited for it; no writer appends an attempt for such an
-- item (an attempt follows a claim, and a claim sees only committed items).
ALTER TABLE public.payment_outbox_attempts DROP CONSTRAINT fk_attempts_item;

CREATE FUNCTION public.outbox_attempts_check_item()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  v_orphan uuid;
BEGIN
  SELECT n.outbox_id INTO v_orphan
    FROM appended_attempts n
   WHERE NOT EXISTS (SELECT 1 FROM public.payment_outbox_items i WHERE i.outbox_id = n.outbox_id)
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'INV-ATTEMPTS-ITEM-FK: an attempt names outbox item %, which was never enqueued; nothing of this statement was recorded',
      v_orphan
      USING ERRCODE = '23503',
            HINT = 'Attempts are recorded by the relayer''s completion functions for items they claimed.';
  END IF;
  RETURN NULL;
END;
$$;

REVOKE ALL ON FUNCTION public.outbox_attempts_check_item() FROM PUBLIC;

CREATE TRIGGER trg_attempts_belong_to_item
AFTER INSERT ON public.payment_outbox_attempts
REFERENCING NEW TABLE AS appended_attempts
FOR EACH STATEMENT EXECUTE FUNCTION public.outbox_attempts_check_item();
