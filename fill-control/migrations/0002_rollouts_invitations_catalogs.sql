-- The fleet's schema, version 2: rolling upgrades, invitations, stations, catalogs and the
-- price of waiting. Portable SQL, as version 1 (docs/control-db.md).

-- Tokens gain the kind `station` (a pre-fill station reporting progress). SQLite cannot
-- change a CHECK in place: the table is made again.
CREATE TABLE tokens_v2 (
    hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('user', 'appliance', 'station')),
    subject TEXT NOT NULL,
    created BIGINT NOT NULL,
    expires BIGINT NOT NULL,
    revoked BIGINT
);
INSERT INTO tokens_v2 (hash, kind, subject, created, expires, revoked)
    SELECT hash, kind, subject, created, expires, revoked FROM tokens;
DROP TABLE tokens;
ALTER TABLE tokens_v2 RENAME TO tokens;

-- A deployment's row is what an instance locks (UPDATE … SET turn = turn + 1) before it
-- counts the site's appliances out and starts an upgrade, so two instances cannot both
-- take the site's last slot.
ALTER TABLE deployments ADD COLUMN turn BIGINT NOT NULL DEFAULT 0;

-- A software version scheduled by ops for a set of appliances.
CREATE TABLE rollouts (
    id TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    max_out BIGINT NOT NULL,
    actor TEXT NOT NULL,
    created BIGINT NOT NULL
);

-- Each appliance's upgrade in a rollout, one phase at a time:
-- pending → draining → upgrading → burn_in → done, or failed (the site's other pending
-- ones then stopped).
CREATE TABLE upgrades (
    rollout TEXT NOT NULL REFERENCES rollouts (id),
    appliance TEXT NOT NULL REFERENCES appliances (serial),
    deployment TEXT NOT NULL REFERENCES deployments (id),
    position BIGINT NOT NULL,
    phase TEXT NOT NULL CHECK (phase IN ('pending', 'draining', 'upgrading', 'burn_in', 'done', 'failed', 'stopped')),
    since BIGINT NOT NULL,
    started BIGINT,
    finished BIGINT,
    detail TEXT NOT NULL,
    PRIMARY KEY (rollout, appliance)
);
CREATE INDEX upgrades_appliance ON upgrades (appliance, phase);
CREATE INDEX upgrades_deployment ON upgrades (deployment, phase);

-- A contact's invitation: a one-time code (kept as its BLAKE3 hash) that sets the
-- account's password.
CREATE TABLE invitations (
    hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    created BIGINT NOT NULL,
    expires BIGINT NOT NULL,
    used BIGINT
);

-- Catalogs the control plane was given (fill's binary format, zstd-compressed here), by
-- id: the BLAKE3 of the uncompressed catalog (what `b3sum` prints for the file).
CREATE TABLE catalogs (
    id TEXT PRIMARY KEY,
    data BYTEA NOT NULL,
    entries BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    created BIGINT NOT NULL
);

-- Each region's current target catalog (an appliance's `catalog` names its region).
CREATE TABLE regions (
    name TEXT PRIMARY KEY,
    catalog TEXT NOT NULL REFERENCES catalogs (id),
    updated BIGINT NOT NULL
);

-- The pre-fill as the station reports it: its last progress (JSON) and, once done, the
-- catalog of what the appliance holds.
ALTER TABLE appliances ADD COLUMN prefill TEXT;
ALTER TABLE appliances ADD COLUMN prefill_catalog TEXT REFERENCES catalogs (id);
