-- 0001_initial: sandboxes, their events, and the store-wide counter.
--
-- Every column the service layer filters or pages on is typed here; the
-- full sandgate.v1.Sandbox travels opaquely in record. Listing pages by id
-- (keyset pagination), so each filter index ends in id: the index alone
-- yields rows in page order.
--
-- Every index is another B-tree to update on each write. Updates rewrite
-- only phase, update_time, resource_version and record, so the ownership
-- indexes cost once, at create; only the phase index moves on updates.
-- The table is keyed by id itself (WITHOUT ROWID), so the id needs no
-- separate index.

CREATE TABLE sandboxes (
    id               TEXT    NOT NULL PRIMARY KEY,
    name             TEXT    NOT NULL,
    tenant           TEXT    NOT NULL,
    project          TEXT    NOT NULL,
    owner            TEXT    NOT NULL,
    request_id       TEXT    NOT NULL,
    request_hash     TEXT    NOT NULL,
    namespace        TEXT    NOT NULL,
    phase            INTEGER NOT NULL,
    create_time      INTEGER NOT NULL,
    update_time      INTEGER NOT NULL,
    expire_time      INTEGER NOT NULL,
    resource_version INTEGER NOT NULL,
    record           BLOB    NOT NULL
) WITHOUT ROWID;

-- Idempotent create: one row per (owner, request_id) when a request id
-- was given.
CREATE UNIQUE INDEX sandboxes_owner_request
    ON sandboxes (owner, request_id) WHERE request_id <> '';
CREATE INDEX sandboxes_tenant ON sandboxes (tenant, id);
CREATE INDEX sandboxes_project ON sandboxes (project, id);
CREATE INDEX sandboxes_namespace ON sandboxes (namespace, id);
CREATE INDEX sandboxes_owner ON sandboxes (owner, id);
CREATE INDEX sandboxes_phase ON sandboxes (phase, id);
-- The TTL sweeper's query; most sandboxes may have no deadline.
CREATE INDEX sandboxes_expire
    ON sandboxes (expire_time) WHERE expire_time > 0;

-- seq comes from the event_seq counter in meta, read and written once per
-- group commit: a seq is never reused, even after the newest events are
-- deleted, so a watcher's cursor stays meaningful, and a rolled-back batch
-- rolls back the counter too, so committed seqs have no gaps.
-- (AUTOINCREMENT would cost an update of sqlite_sequence per event.)
CREATE TABLE events (
    seq              INTEGER PRIMARY KEY,
    time             INTEGER NOT NULL,
    type             INTEGER NOT NULL,
    sandbox_id       TEXT    NOT NULL,
    sandbox_name     TEXT    NOT NULL,
    namespace        TEXT    NOT NULL,
    tenant           TEXT    NOT NULL,
    project          TEXT    NOT NULL,
    owner            TEXT    NOT NULL,
    request_id       TEXT    NOT NULL,
    phase            INTEGER NOT NULL,
    reason           TEXT    NOT NULL,
    message          TEXT    NOT NULL,
    resource_version INTEGER NOT NULL
);
CREATE INDEX events_sandbox ON events (sandbox_id, seq);

-- Store-wide counters, bumped in the writing transaction.
CREATE TABLE meta (
    key   TEXT    NOT NULL PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO meta (key, value) VALUES ('resource_version', 0);
INSERT INTO meta (key, value) VALUES ('event_seq', 0);
