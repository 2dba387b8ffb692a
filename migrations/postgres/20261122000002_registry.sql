-- The module catalog, as the registry issue defines manifests: no tier; a
-- description, a category and a soft delete per module; each version keeps
-- its manifest as the protobuf message (so it reads back exactly as
-- registered) with the digest that makes versions immutable, and its
-- dependencies as rows the catalog checks its graph with. Never written
-- before this migration.

ALTER TABLE modules DROP COLUMN tier;
ALTER TABLE modules ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE modules ADD COLUMN category TEXT NOT NULL DEFAULT '';
ALTER TABLE modules ADD COLUMN deleted_at TIMESTAMPTZ;
CREATE INDEX modules_category ON modules (category, module_id);

ALTER TABLE module_versions DROP COLUMN manifest;
ALTER TABLE module_versions ADD COLUMN manifest BYTEA NOT NULL;
ALTER TABLE module_versions ADD COLUMN digest TEXT NOT NULL;
CREATE INDEX module_versions_registered ON module_versions (module_id, registered_at, version);

CREATE TABLE module_dependencies (
    module_id    TEXT NOT NULL,
    version      TEXT NOT NULL,
    depends_on   TEXT NOT NULL,
    requirement  TEXT NOT NULL,
    optional     BOOLEAN NOT NULL,
    PRIMARY KEY (module_id, version, depends_on),
    FOREIGN KEY (module_id, version) REFERENCES module_versions (module_id, version) ON DELETE CASCADE
);
CREATE INDEX module_dependencies_depends_on ON module_dependencies (depends_on);

-- An instance is found again by the key it registers with; expired leases
-- are swept by time.
ALTER TABLE module_instances ADD COLUMN instance_key TEXT NOT NULL;
CREATE UNIQUE INDEX module_instances_key ON module_instances (module_id, instance_key);
CREATE INDEX module_instances_lease ON module_instances (lease_expires_at);
