-- RBAC: every row of a role graph or binding stays inside its tenant (the
-- composite foreign keys), bindings may expire, and a tenant-wide binding
-- has no company. SQLite cannot alter constraints: the two tables are
-- rebuilt.

CREATE UNIQUE INDEX users_tenant_id_id_key ON users (tenant_id, id);
CREATE UNIQUE INDEX companies_tenant_id_id_key ON companies (tenant_id, id);
CREATE UNIQUE INDEX roles_tenant_id_id_key ON roles (tenant_id, id);

-- Never written before this migration.
DROP TABLE role_parents;
CREATE TABLE role_parents (
    tenant_id       BLOB NOT NULL,
    role_id         BLOB NOT NULL,
    parent_role_id  BLOB NOT NULL,
    PRIMARY KEY (role_id, parent_role_id),
    FOREIGN KEY (tenant_id, role_id) REFERENCES roles (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, parent_role_id) REFERENCES roles (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX role_parents_parent ON role_parents (parent_role_id);

CREATE TABLE role_bindings_rebuilt (
    id          BLOB PRIMARY KEY,
    tenant_id   BLOB NOT NULL REFERENCES tenants (id),
    user_id     BLOB NOT NULL,
    role_id     BLOB NOT NULL,
    company_id  BLOB,
    created_at  TEXT NOT NULL,
    expires_at  TEXT,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, role_id) REFERENCES roles (tenant_id, id) ON DELETE CASCADE,
    -- A tenant-wide binding (no company) is not checked against companies.
    FOREIGN KEY (tenant_id, company_id) REFERENCES companies (tenant_id, id) ON DELETE CASCADE
);
-- Before this migration only signup bound roles, always tenant-wide.
INSERT INTO role_bindings_rebuilt (id, tenant_id, user_id, role_id, company_id, created_at)
SELECT id, tenant_id, user_id, role_id, NULL, created_at FROM role_bindings;
DROP TABLE role_bindings;
ALTER TABLE role_bindings_rebuilt RENAME TO role_bindings;
-- Covers what a check reads of a user's bindings, and the key of each role,
-- so compiling a user's grants touches indexes only.
CREATE INDEX role_bindings_held ON role_bindings (tenant_id, user_id, company_id, expires_at, role_id);
CREATE INDEX roles_key ON roles (id, key);
CREATE UNIQUE INDEX role_bindings_tenant_wide ON role_bindings (user_id, role_id)
    WHERE company_id IS NULL;
CREATE UNIQUE INDEX role_bindings_in_company ON role_bindings (user_id, role_id, company_id)
    WHERE company_id IS NOT NULL;
CREATE INDEX role_bindings_role ON role_bindings (role_id);

CREATE INDEX permissions_module ON permissions (module_id);

-- The tenant-admin role holds every permission of its tenant, those of
-- modules included, not only the core's.
UPDATE role_permissions SET permission = '*'
WHERE permission = 'plinth:*'
  AND role_id IN (SELECT id FROM roles WHERE system AND key = 'tenant-admin');
