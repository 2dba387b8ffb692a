-- Every change to module_instances (registration, status, removal; not a
-- lease renewal) is numbered by the next revision, in the transaction that
-- makes it: SQLite serializes writers, so revisions commit in order without
-- gaps, and a watcher reading changes after the revision it holds misses
-- none. Each change keeps the instance as the change left it, so a watcher
-- resuming replays exactly what it missed.
CREATE TABLE instance_revision (
    singleton  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    revision   BIGINT NOT NULL
);
INSERT INTO instance_revision (singleton, revision) VALUES (TRUE, 0);

CREATE TABLE instance_changes (
    revision    BIGINT PRIMARY KEY,
    removed     BOOLEAN NOT NULL,
    instance    TEXT NOT NULL,
    changed_at  TEXT NOT NULL
);
CREATE INDEX instance_changes_changed_at ON instance_changes (changed_at);
