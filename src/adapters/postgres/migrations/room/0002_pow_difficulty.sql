-- The proof of work a line asks of joining buyers (leading zero bits, 0: none): copied from the event's
-- room at the first join, changed by the organizer during the sale.
ALTER TABLE room_lines ADD COLUMN pow_difficulty INTEGER NOT NULL DEFAULT 0;
