-- RBAC: every row of a role graph or binding stays inside its tenant (the
-- composite foreign keys), bindings may expire, and a tenant-wide binding
-- has no company.

ALTER TABLE users ADD CONSTRAINT users_tenant_id_id_key UNIQUE (tenant_id, id);
ALTER TABLE companies ADD CONSTRAINT companies_tenant_id_id_key UNIQUE (tenant_id, id);
ALTER TABLE roles ADD CONSTRAINT roles_tenant_id_id_key UNIQUE (tenant_id, id);

-- Never written before this migration.
DROP TABLE role_parents;
CREATE TABLE role_parents (
    tenant_id       UUID NOT NULL,
    role_id         UUID NOT NULL,
    parent_role_id  UUID NOT NULL,
    PRIMARY KEY (role_id, parent_role_id),
    FOREIGN KEY (tenant_id, role_id) REFERENCES roles (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, parent_role_id) REFERENCES roles (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX role_parents_parent ON role_parents (parent_role_id);

ALTER TABLE role_bindings DROP CONSTRAINT role_bindings_user_id_role_id_company_id_key;
ALTER TABLE role_bindings DROP CONSTRAINT role_bindings_user_id_fkey;
ALTER TABLE role_bindings DROP CONSTRAINT role_bindings_role_id_fkey;
ALTER TABLE role_bindings ALTER COLUMN company_id DROP DEFAULT;
ALTER TABLE role_bindings ALTER COLUMN company_id DROP NOT NULL;
ALTER TABLE role_bindings ALTER COLUMN company_id TYPE UUID USING NULLIF(company_id, '')::UUID;
ALTER TABLE role_bindings ADD COLUMN expires_at TIMESTAMPTZ;
ALTER TABLE role_bindings
    ADD CONSTRAINT role_bindings_tenant_id_user_id_fkey FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    ADD CONSTRAINT role_bindings_tenant_id_role_id_fkey FOREIGN KEY (tenant_id, role_id)
        REFERENCES roles (tenant_id, id) ON DELETE CASCADE,
    -- A tenant-wide binding (no company) is not checked against companies.
    ADD CONSTRAINT role_bindings_tenant_id_company_id_fkey FOREIGN KEY (tenant_id, company_id)
        REFERENCES companies (tenant_id, id) ON DELETE CASCADE;
CREATE UNIQUE INDEX role_bindings_tenant_wide ON role_bindings (user_id, role_id)
    WHERE company_id IS NULL;
CREATE UNIQUE INDEX role_bindings_in_company ON role_bindings (user_id, role_id, company_id)
    WHERE company_id IS NOT NULL;
CREATE INDEX role_bindings_role ON role_bindings (role_id);
-- Covers what a check reads of a user's bindings, and the key of each role,
-- so compiling a user's grants touches indexes only.
DROP INDEX role_bindings_tenant_user;
CREATE INDEX role_bindings_held ON role_bindings (tenant_id, user_id, company_id, expires_at, role_id);
CREATE INDEX roles_key ON roles (id, key);

CREATE INDEX permissions_module ON permissions (module_id);

-- The tenant-admin role holds every permission of its tenant, those of
-- modules included, not only the core's.
UPDATE role_permissions SET permission = '*'
WHERE permission = 'plinth:*'
  AND role_id IN (SELECT id FROM roles WHERE system AND key = 'tenant-admin');
