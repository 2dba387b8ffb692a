-- Module audit records, queries, the live tail and the event stream.

-- A module may name the user it acts for; such a user is claimed, not
-- verified. An event written under an idempotency key keeps the digest of
-- what was submitted, so a repeat with other content is told apart.
ALTER TABLE audit_events ADD COLUMN actor_user_claimed BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE audit_events ADD COLUMN idempotency_digest BYTEA;
-- Actions compare byte by byte, so a prefix is a range an index serves
-- whatever the database's collation.
ALTER TABLE audit_events ALTER COLUMN action TYPE TEXT COLLATE "C";

-- One index per QueryEvents filter, each within a chain and in chain order;
-- the partial ones leave out the events that lack the field.
DROP INDEX audit_events_action;
CREATE INDEX audit_events_by_action ON audit_events (chain_id, action, sequence);
CREATE INDEX audit_events_by_user ON audit_events (chain_id, actor_user_id, sequence)
    WHERE actor_user_id <> '';
CREATE INDEX audit_events_by_module ON audit_events (chain_id, actor_module_id, sequence)
    WHERE actor_module_id <> '';
CREATE INDEX audit_events_by_api_key ON audit_events (chain_id, actor_api_key_id, sequence)
    WHERE actor_api_key_id <> '';
CREATE INDEX audit_events_by_resource ON audit_events (chain_id, resource_type, resource_id, sequence)
    WHERE resource_type <> '';
CREATE INDEX audit_events_by_request ON audit_events (chain_id, request_id, sequence)
    WHERE request_id <> '';
CREATE INDEX audit_events_by_company ON audit_events (chain_id, company_id, sequence)
    WHERE company_id <> '';
CREATE INDEX audit_events_by_outcome ON audit_events (chain_id, outcome, sequence)
    WHERE outcome <> 'success';

-- The order events committed in, across chains: each transaction that
-- appends to a chain takes the next feed positions as its last statement
-- (the counter row stays locked until commit), one per run of a chain it
-- appended, so positions commit in order without gaps and a tail reading
-- after a position misses nothing.
CREATE TABLE audit_feed_head (
    singleton  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    position   BIGINT NOT NULL
);
INSERT INTO audit_feed_head (singleton, position) VALUES (TRUE, 0);

CREATE TABLE audit_feed (
    position        BIGINT PRIMARY KEY,
    chain_id        TEXT NOT NULL,
    first_sequence  BIGINT NOT NULL,
    last_sequence   BIGINT NOT NULL
);
CREATE INDEX audit_feed_by_chain ON audit_feed (chain_id, position);

-- How far the Redis event stream has been published along the feed (after
-- event `sequence` of the run at `position`); the feed itself is the outbox.
CREATE TABLE audit_stream_cursor (
    singleton  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    position   BIGINT NOT NULL,
    sequence   BIGINT NOT NULL
);
INSERT INTO audit_stream_cursor (singleton, position, sequence) VALUES (TRUE, 0, 0);

-- Chains written before the feed existed are published from their start.
INSERT INTO audit_feed (position, chain_id, first_sequence, last_sequence)
SELECT ROW_NUMBER() OVER (ORDER BY chain_id), chain_id, 1, sequence
FROM audit_chain_heads WHERE sequence > 0;
UPDATE audit_feed_head SET position = (SELECT COUNT(*) FROM audit_feed);
