-- The waiting room in front of an event's purchases (src/domain/waiting-room.ts), as JSON; NULL: none.
ALTER TABLE events ADD COLUMN waiting_room TEXT;
