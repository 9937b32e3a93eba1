-- The change feed's sequencer (meta/postgres/feed.go): committed events get
-- their seq after the fact, in id order, by one sequencer at a time. This
-- row is what a sequencer locks (SELECT ... FOR UPDATE), and next_seq is the
-- next number to give: numbers only grow, so a reader that has seen seq N
-- never later finds an event below N. The sequencer also starts above
-- max(seq), so events copied in with their seq (migrate-metadata) stay
-- below every new one; the row is therefore derived state, not copied.
CREATE TABLE feed_state (
	id       INTEGER PRIMARY KEY CHECK (id = 1),
	next_seq BIGINT NOT NULL
);
INSERT INTO feed_state (id, next_seq) SELECT 1, coalesce(max(seq), 0) + 1 FROM events;
