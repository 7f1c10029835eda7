-- MyNumber Locker on PostgreSQL, schema 1: one table per kind of row, each holding the rows
-- exactly as the embedded store holds them (the same sealed bytes), so MACs, record associated
-- data, the audit chain and snapshots carry over unchanged. Text keys sort bytewise (COLLATE
-- "C"), as the embedded store sorts them, so lists, pages and the authority digest agree.

CREATE TABLE locker.meta (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE locker.records (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE locker.blind_index (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE locker.tenants (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE locker.operators (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE locker.tokens (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
-- The audit chain: the sequence number is the primary key, so two daemons can never both
-- write entry N (a fork is refused by the database itself).
CREATE TABLE locker.audit (key bigint PRIMARY KEY CHECK (key > 0), value bytea NOT NULL);
CREATE TABLE locker.audit_checkpoints (key bigint PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE locker.audit_keys (key bigint PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE locker.rewrap_jobs (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE locker.key_destructions (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE locker.epoch_keys (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE locker.disposal_queue (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE locker.corrections (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE locker.tenant_info (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE locker.certificates (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE locker.change_requests (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE locker.authority_state (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);

-- The chain head: one row every group commit locks (SELECT ... FOR UPDATE) before it reads
-- the head, so the daemons of a cluster append one after another.
CREATE TABLE locker.chain_head (
    id integer PRIMARY KEY CHECK (id = 1),
    seq bigint NOT NULL CHECK (seq >= 0)
);
INSERT INTO locker.chain_head (id, seq) VALUES (1, 0);

-- Leases of the cluster duties (checkpoints, rewrap, disposal): one holder at a time, until
-- it stops renewing.
CREATE TABLE locker.leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    expires_at timestamptz NOT NULL
);
