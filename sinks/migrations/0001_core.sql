-- 0001_core: every stackwatch table, identical in plain PostgreSQL and TimescaleDB mode.
--
-- Design rules (README "Storage" explains them at length):
--  * Every table that a stream writer fills has a NATURAL primary key / unique constraint, so a
--    writer can COPY a batch into a temporary staging table and then
--    `INSERT … SELECT … ON CONFLICT DO NOTHING / DO UPDATE`: replaying a topic never duplicates.
--  * Tables that become hypertables in TimescaleDB mode (raw_frames, readings, *_aggregates)
--    carry their time column in every unique constraint, as Timescale requires.
--  * No foreign keys from the high-volume tables to `stacks`: ingest must never block or fail
--    on the registry (an unknown MN is the gateway's business, not the database's).
--  * All times are timestamptz (UTC inside). HJ 212 DataTime is Beijing local time; the decoder
--    converts it, the compliance views bucket days/months in Asia/Shanghai (migration 0003).
--  * Concentrations are double precision in mg/m³ (standard conditions, dry); HJ 212 N14.2 fits.

-- The data-logger registry: one row per monitored stack (排放口) and its logger (MN).
CREATE TABLE IF NOT EXISTS stacks (
    stack_id          text PRIMARY KEY,
    mn                text NOT NULL UNIQUE,        -- HJ 212 MN (14 or 24 chars in practice)
    password_sha256   text CHECK (password_sha256 IS NULL OR password_sha256 ~ '^[0-9a-f]{64}$'),
    name              text NOT NULL,
    plant             text NOT NULL,
    city              text,
    province          text,
    sector            text NOT NULL,               -- canonical ids, see stackwatch/registry.py
    process           text NOT NULL,
    lat               double precision CHECK (lat BETWEEN -90 AND 90),
    lon               double precision CHECK (lon BETWEEN -180 AND 180),
    program           text,                        -- limit program tag, e.g. NATL-2024-ULE
    rtd_interval_s    integer CHECK (rtd_interval_s BETWEEN 30 AND 3600),       -- HJ 212 RtdInterval
    min_interval_min  integer CHECK (min_interval_min IN (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE stacks IS
    'Stack / data-logger registry. MN is unique: the gateway resolves a frame to a stack by MN.';

-- updated_at is maintained by the database, so no writer can forget it (audit trail).
CREATE OR REPLACE FUNCTION stackwatch_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER stacks_touch_updated_at BEFORE UPDATE ON stacks
    FOR EACH ROW EXECUTE FUNCTION stackwatch_touch_updated_at();

-- The immutable raw layer (docs/hj212.md#raw-layer): every frame verbatim, accepted or not.
-- Natural key (received_at, peer, frame_md5): the same bytes from the same peer at the same
-- instant are one frame. MN is not in the key because a rejected frame may have no MN.
CREATE TABLE IF NOT EXISTS raw_frames (
    received_at  timestamptz NOT NULL,
    peer         text NOT NULL,
    frame_md5    uuid NOT NULL GENERATED ALWAYS AS (md5(text)::uuid) STORED,
    mn           text,
    cn           text,
    verdict      text NOT NULL CHECK (verdict IN ('accepted', 'rejected')),
    reasons      text[] NOT NULL DEFAULT '{}',
    text         text NOT NULL,
    gateway      text NOT NULL DEFAULT 'gateway',
    PRIMARY KEY (received_at, peer, frame_md5)
);
CREATE INDEX IF NOT EXISTS raw_frames_mn_time_idx ON raw_frames (mn, received_at DESC);
COMMENT ON TABLE raw_frames IS
    'Every HJ 212 frame exactly as received, with the gateway verdict and reasons.';

-- Decoded values, LONG format: one row per (stack, factor, command, DataTime).
-- Why long and not wide (one column per factor):
--  * stacks report different factor sets (cement kiln vs boiler vs VOC), 2005 and 2017 codes
--    are normalised to one code, and new factors need no ALTER TABLE;
--  * Timescale compression with segmentby (stack_id, factor, cn) + orderby data_time DESC
--    stores each factor's series as one compressed column batch (delta/gorilla encoding works
--    best on one homogeneous series), and NULL-heavy wide rows compress worse;
--  * Grafana and the evaluator query one stack × factor × time range, which the primary key
--    (stack_id, factor, cn, data_time) answers with an index range scan.
-- `value` is the -Rtd value for CN 2011 and the -Avg value for 2051/2061/2031.
CREATE TABLE IF NOT EXISTS readings (
    stack_id     text NOT NULL,
    factor       text NOT NULL,                 -- HJ 212-2017 code (a21026, …) after 2005 mapping
    cn           text NOT NULL CHECK (cn ~ '^[0-9]{4}$'),   -- 2011 real-time, 2051 minute, 2061 hour, 2031 day
    data_time    timestamptz NOT NULL,          -- HJ 212 DataTime (interval start for 2051/2061/2031)
    value        double precision,              -- -Rtd (2011) or -Avg (2051/2061/2031)
    min_value    double precision,              -- -Min
    max_value    double precision,              -- -Max
    cou          double precision,              -- -Cou (interval emission amount / flow volume)
    zs_value     double precision,              -- -ZsRtd / -ZsAvg (converted to reference O2)
    zs_min       double precision,
    zs_max       double precision,
    flag         text CHECK (flag IS NULL OR length(flag) <= 4),   -- HJ 212 Table 8 (N F M S D C T B) or vendor
    eflag        text,                          -- -EFlag, instrument-defined
    mn           text NOT NULL,
    qn           text,
    resent       boolean NOT NULL DEFAULT false,   -- HJ 212-2025 RF=1 (补传)
    received_at  timestamptz NOT NULL,
    PRIMARY KEY (stack_id, factor, cn, data_time)
);
CREATE INDEX IF NOT EXISTS readings_stack_time_idx ON readings (stack_id, data_time DESC);
COMMENT ON TABLE readings IS
    'Decoded HJ 212 values, one row per stack, factor, CN and DataTime (long format).';

-- Aggregates (HJ 75 / HJ 212 App. D: minute n>=12, hour k>=45 minutes, day m>=20 hours;
-- App. C flag rule: N if > 75 % of constituents normal, else D). One row per period: the
-- platform's own computation (source='platform') or the logger-reported value when the
-- platform had no constituents (source='logger'); the logger's original 2051/2061/2031 values
-- stay in `readings` regardless. `revision` grows when late data recomputes a period; writers
-- upsert with `ON CONFLICT … DO UPDATE … WHERE excluded.revision > <table>.revision`, so a
-- replay never regresses a period.
CREATE TABLE IF NOT EXISTS minute_aggregates (
    stack_id        text NOT NULL,
    factor          text NOT NULL,
    period_start    timestamptz NOT NULL,
    mean            double precision,
    zs_mean         double precision,            -- converted to reference O2 (HJ 212 App. D eq. 28)
    min             double precision,
    max             double precision,
    valid_count     integer NOT NULL CHECK (valid_count >= 0),
    total_count     integer NOT NULL CHECK (total_count >= 0),
    flag            text,
    valid           boolean NOT NULL,
    invalid_reason  text,
    mass_kg         double precision,            -- G = C × Q × 10⁻⁶ (App. D eq. 33), per period
    ref_o2          double precision,            -- reference O2 % used for zs_mean; NULL = measured basis
    source          text NOT NULL DEFAULT 'platform' CHECK (source IN ('logger', 'platform')),
    revision        integer NOT NULL DEFAULT 0 CHECK (revision >= 0),
    computed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stack_id, factor, period_start),
    CHECK (valid_count <= total_count),
    CHECK (valid OR invalid_reason IS NOT NULL),
    CHECK (NOT valid OR mean IS NOT NULL)
);

-- Hour rows also carry the limit that applied to that hour (see README "Storage": limits are
-- effective-dated and program-tagged (docs/limits.md#precedence-in-the-catalogue), so the evaluator stores the limit it used;
-- compliance then never changes retroactively when the catalogue changes, and the compliance
-- views are single-table aggregates, which a Timescale continuous aggregate requires).
CREATE TABLE IF NOT EXISTS hour_aggregates (
    LIKE minute_aggregates INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    limit_mg_m3     double precision CHECK (limit_mg_m3 IS NULL OR limit_mg_m3 > 0),
    limit_program   text,                        -- e.g. NATL-2024-ULE; NULL when no limit applies
    PRIMARY KEY (stack_id, factor, period_start)
);

CREATE TABLE IF NOT EXISTS day_aggregates (
    LIKE minute_aggregates INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    PRIMARY KEY (stack_id, factor, period_start)
);

-- The primary keys lead with (stack_id, factor): they serve per stack/factor time ranges.
-- "Latest values of one stack" (all factors) needs time DESC per stack:
CREATE INDEX IF NOT EXISTS minute_aggregates_stack_time_idx
    ON minute_aggregates (stack_id, period_start DESC);
CREATE INDEX IF NOT EXISTS hour_aggregates_stack_time_idx
    ON hour_aggregates (stack_id, period_start DESC);
CREATE INDEX IF NOT EXISTS day_aggregates_stack_time_idx
    ON day_aggregates (stack_id, period_start DESC);

-- One row per alert (the lifecycle's current state); history lives in alert_events.
CREATE TABLE IF NOT EXISTS alerts (
    alert_id          text PRIMARY KEY,
    stack_id          text NOT NULL,
    factor            text,                      -- NULL for stack-level alerts (link down, …)
    rule              text NOT NULL,
    severity          text NOT NULL,
    state             text NOT NULL CHECK (state IN ('active', 'acknowledged', 'cleared')),
    first_seen        timestamptz NOT NULL,
    last_seen         timestamptz NOT NULL,
    cleared_at        timestamptz,
    peak_value        double precision,
    count             integer NOT NULL DEFAULT 1 CHECK (count >= 1),
    limit_value       double precision,          -- "limit" is an SQL keyword
    ref_o2            double precision,
    evidence          jsonb NOT NULL DEFAULT '{}',
    acked_by          text,
    acked_at          timestamptz,
    ack_reason        text,
    escalation_level  integer NOT NULL DEFAULT 0 CHECK (escalation_level >= 0),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (last_seen >= first_seen),
    CHECK ((state = 'cleared') = (cleared_at IS NOT NULL)),
    CHECK ((acked_at IS NULL) = (acked_by IS NULL))
);
CREATE OR REPLACE TRIGGER alerts_touch_updated_at BEFORE UPDATE ON alerts
    FOR EACH ROW EXECUTE FUNCTION stackwatch_touch_updated_at();
CREATE INDEX IF NOT EXISTS alerts_open_idx ON alerts (stack_id, first_seen DESC)
    WHERE state <> 'cleared';
CREATE INDEX IF NOT EXISTS alerts_stack_time_idx ON alerts (stack_id, first_seen DESC);

-- Append-only alert history; (alert_id, seq) is the natural key, so replays are no-ops.
CREATE TABLE IF NOT EXISTS alert_events (
    alert_id  text NOT NULL REFERENCES alerts (alert_id) ON DELETE CASCADE,
    seq       integer NOT NULL CHECK (seq >= 0),
    event     text NOT NULL
              CHECK (event IN ('raise', 'update', 'clear', 'ack', 'escalate', 'suppressed')),
    at        timestamptz NOT NULL,
    payload   jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (alert_id, seq)
);
CREATE INDEX IF NOT EXISTS alert_events_at_idx ON alert_events (at DESC);

-- Delivery log: one row per (alert event, channel, recipient); retries update the row.
CREATE TABLE IF NOT EXISTS notifications (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id    text NOT NULL,
    event_seq   integer NOT NULL DEFAULT 0,
    channel     text NOT NULL,                   -- webhook | email | …
    recipient   text NOT NULL,
    status      text NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'suppressed')),
    attempts    integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    UNIQUE (alert_id, event_seq, channel, recipient)
);
CREATE INDEX IF NOT EXISTS notifications_pending_idx ON notifications (created_at)
    WHERE status IN ('pending', 'failed');

-- Whatever a stage refused, with the reason and the original payload: nothing is lost.
CREATE TABLE IF NOT EXISTS dead_letters (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stage         text NOT NULL,
    reason        text NOT NULL,
    payload       text NOT NULL,
    payload_md5   uuid NOT NULL GENERATED ALWAYS AS (md5(payload)::uuid) STORED,
    key           text,
    occurred_at   timestamptz NOT NULL,
    details       jsonb NOT NULL DEFAULT '{}',
    UNIQUE (stage, occurred_at, payload_md5)
);
CREATE INDEX IF NOT EXISTS dead_letters_time_idx ON dead_letters (occurred_at DESC);
