-- 0008_outbox_terminal_uniqueness.sql
-- INV-ATTEMPTS-ONE-TERMINAL: at most one terminal attempt (DISPATCHED or FAILED) per
-- outbox item, whatever path writes it; a second one is refused with 23505.
CREATE UNIQUE INDEX ux_attempts_one_terminal_per_outbox
  ON public.payment_outbox_attempts (outbox_id)
  WHERE state IN ('DISPATCHED', 'FAILED');
