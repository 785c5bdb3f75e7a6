-- The fleet's schema, version 3: the portal's sign-in throttle and what its fleet page sorts by. Portable SQL, as version 1
-- (docs/control-db.md). Portal sessions are user tokens (`tokens`, kind `user`).

-- Failed sign-ins per email (lower-cased) since the first of the current window: past the
-- limit, sign-ins for that email are refused until the window ends.
CREATE TABLE login_failures (
    email TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    since BIGINT NOT NULL
);

-- What the fleet page sorts by, kept on the appliance's row: how many checks of its latest
-- run failed, and since when it is in its state.
ALTER TABLE appliances ADD COLUMN failing BIGINT NOT NULL DEFAULT 0;
ALTER TABLE appliances ADD COLUMN state_since BIGINT;
CREATE INDEX appliances_state ON appliances (state);
