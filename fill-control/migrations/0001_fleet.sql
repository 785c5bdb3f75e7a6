-- The fleet's schema, version 1. Portable SQL: the same text runs on SQLite and PostgreSQL
-- (times are unix seconds in BIGINT, flags are BIGINT 0/1, ids are TEXT made by the
-- control plane, JSON documents are TEXT). docs/control-db.md explains each table.

CREATE TABLE partners (
    name TEXT PRIMARY KEY,
    created BIGINT NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('ops', 'partner')),
    partner TEXT REFERENCES partners (name),
    password_hash TEXT NOT NULL,
    created BIGINT NOT NULL,
    CHECK ((role = 'ops') = (partner IS NULL))
);

-- Bearer tokens, stored as the BLAKE3 hash of the token: a user's (after login), an
-- appliance's (made at allocation, allowed to report for that serial only).
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('user', 'appliance')),
    subject TEXT NOT NULL,
    created BIGINT NOT NULL,
    expires BIGINT NOT NULL,
    revoked BIGINT
);

-- A partner's site survey and the deployment it opens.
CREATE TABLE deployments (
    id TEXT PRIMARY KEY,
    partner TEXT NOT NULL REFERENCES partners (name),
    site TEXT NOT NULL,
    survey TEXT NOT NULL,
    tz TEXT NOT NULL,
    offpeak TEXT NOT NULL,
    created BIGINT NOT NULL,
    UNIQUE (partner, site)
);

CREATE TABLE contacts (
    deployment TEXT NOT NULL REFERENCES deployments (id),
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('engineering', 'noc', 'shipping', 'customs')),
    PRIMARY KEY (deployment, email, role)
);

CREATE TABLE appliances (
    serial TEXT PRIMARY KEY,
    deployment TEXT NOT NULL REFERENCES deployments (id),
    hardware TEXT NOT NULL CHECK (hardware IN ('storage', 'global', 'flash')),
    capacity BIGINT NOT NULL,
    catalog TEXT NOT NULL,
    state TEXT NOT NULL,
    -- How many events it has: the next event's seq is seq + 1.
    seq BIGINT NOT NULL,
    before_drain TEXT,
    carrier TEXT,
    tracking TEXT,
    last_report BIGINT,
    report TEXT,
    version TEXT,
    bgp TEXT,
    created BIGINT NOT NULL
);

-- Every transition, once: (appliance, seq) is unique, so two control-plane instances that
-- race for the same step cannot both record it.
CREATE TABLE events (
    appliance TEXT NOT NULL REFERENCES appliances (serial),
    seq BIGINT NOT NULL,
    time BIGINT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (appliance, seq)
);

-- Each turn-up check result an appliance reported.
CREATE TABLE checks (
    appliance TEXT NOT NULL REFERENCES appliances (serial),
    time BIGINT NOT NULL,
    name TEXT NOT NULL,
    passed BIGINT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (appliance, time, name)
);

-- The outbox: each email once (its id is derived from what caused it), sent by whichever
-- instance claims it first.
CREATE TABLE emails (
    id TEXT PRIMARY KEY,
    deployment TEXT NOT NULL REFERENCES deployments (id),
    appliance TEXT,
    kind TEXT NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    created BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    next_try BIGINT NOT NULL,
    claimed_until BIGINT NOT NULL,
    sent BIGINT,
    last_error TEXT
);

CREATE INDEX emails_due ON emails (sent, next_try);
CREATE INDEX appliances_deployment ON appliances (deployment);
