-- 0003_credentials: credential records (CredentialService).
--
-- A record is a reference to secret material, never the material: the
-- full sandgate.v1.Credential travels opaquely in record, with the
-- columns the service filters and pages on typed beside it. Keyed by
-- (tenant, name), which is also the listing order (keyset pagination).
-- Credentials have no events and no resource_version: their writes do not
-- touch the counters in meta.
CREATE TABLE credentials (
    tenant      TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    owner       TEXT    NOT NULL,
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL,
    record      BLOB    NOT NULL,
    PRIMARY KEY (tenant, name)
) WITHOUT ROWID;
