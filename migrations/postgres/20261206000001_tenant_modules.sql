-- Modules in tenants, their configuration layers, the outbox of lifecycle
-- callbacks and industry templates, as the enablement issue defines them.
-- The placeholder tables of the first schema were never written.
DROP TABLE company_module_configs;
DROP TABLE tenant_module_configs;
DROP TABLE company_modules;
DROP TABLE tenant_modules;
DROP TABLE industry_templates;

-- Bumped by every change to the tenant's modules or their configuration.
ALTER TABLE tenants ADD COLUMN modules_version BIGINT NOT NULL DEFAULT 0;

CREATE TABLE tenant_modules (
    tenant_id     UUID NOT NULL REFERENCES tenants (id),
    module_id     TEXT NOT NULL REFERENCES modules (module_id),
    state         TEXT NOT NULL,
    -- NULL follows the module's active version.
    version_pin   TEXT,
    -- {"feature": true|false} switched for the whole tenant.
    features      JSONB NOT NULL,
    failure       TEXT NOT NULL DEFAULT '',
    -- Whether the module's default roles were created in the tenant (once).
    roles_seeded  BOOLEAN NOT NULL DEFAULT FALSE,
    enabled_at    TIMESTAMPTZ,
    updated_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, module_id)
);
CREATE INDEX tenant_modules_module ON tenant_modules (module_id, tenant_id);

CREATE TABLE company_modules (
    company_id    UUID NOT NULL REFERENCES companies (id),
    module_id     TEXT NOT NULL REFERENCES modules (module_id),
    tenant_id     UUID NOT NULL REFERENCES tenants (id),
    switched_off  BOOLEAN NOT NULL,
    features      JSONB NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (company_id, module_id)
);
CREATE INDEX company_modules_tenant ON company_modules (tenant_id, module_id);

-- A tenant's ('' company) or a company's configuration layer of a module:
-- the JSON text as written (secret values sealed), so that key order and
-- 64-bit integers survive.
CREATE TABLE module_configs (
    tenant_id   UUID NOT NULL REFERENCES tenants (id),
    module_id   TEXT NOT NULL REFERENCES modules (module_id),
    company_id  TEXT NOT NULL DEFAULT '',
    document    TEXT NOT NULL,
    etag        TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, module_id, company_id)
);
CREATE INDEX module_configs_module ON module_configs (module_id, tenant_id);

-- Every change that may change a resolved configuration (a layer, a tenant
-- module's version or state, a company switch) is numbered by the next
-- revision in its transaction, as instance changes are: the counter row is
-- locked until commit, so revisions commit in order without gaps. A NULL
-- tenant is every tenant of the module (its active version changed).
CREATE TABLE config_revision (
    singleton  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    revision   BIGINT NOT NULL
);
INSERT INTO config_revision (singleton, revision) VALUES (TRUE, 0);

CREATE TABLE config_changes (
    revision    BIGINT PRIMARY KEY,
    module_id   TEXT NOT NULL,
    tenant_id   UUID,
    company_id  TEXT NOT NULL DEFAULT '',
    changed_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX config_changes_module ON config_changes (module_id, revision);
CREATE INDEX config_changes_changed_at ON config_changes (changed_at);

-- Lifecycle callbacks to deliver after their change committed, at least
-- once, oldest first per tenant and module; a delivered one is deleted.
CREATE TABLE module_callbacks (
    operation_id     UUID PRIMARY KEY,
    tenant_id        UUID NOT NULL REFERENCES tenants (id),
    module_id        TEXT NOT NULL REFERENCES modules (module_id),
    company_id       TEXT NOT NULL DEFAULT '',
    callback         TEXT NOT NULL,
    module_version   TEXT NOT NULL,
    -- {"user_id", "module_id", "api_key_id"} of who made the change.
    actor            JSONB NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    -- A replica delivering it holds it until then.
    claimed_until    TIMESTAMPTZ,
    last_error       TEXT NOT NULL DEFAULT '',
    created_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX module_callbacks_due ON module_callbacks (next_attempt_at);
CREATE INDEX module_callbacks_order ON module_callbacks (tenant_id, module_id, operation_id);

CREATE TABLE industry_templates (
    code         TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL,
    active       BOOLEAN NOT NULL,
    etag         TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE industry_template_modules (
    template_code  TEXT NOT NULL REFERENCES industry_templates (code) ON DELETE CASCADE,
    position       INTEGER NOT NULL,
    module_id      TEXT NOT NULL REFERENCES modules (module_id),
    required       BOOLEAN NOT NULL,
    -- JSON text, '' for none.
    tenant_config  TEXT NOT NULL,
    PRIMARY KEY (template_code, module_id)
);
