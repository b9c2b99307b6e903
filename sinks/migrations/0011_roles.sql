-- 0011_roles: least privilege in the database (issue #15). Three NOLOGIN group roles; the
-- deployment puts login users in them (`stackwatch db logins`, run by compose's `migrate`
-- service with passwords from its environment), so no process but the migrator holds more
-- than it needs, and Grafana never logs in as the owner:
--
--   stackwatch_owner   the migrator's group: CREATE on the schema, every privilege on every
--                      stackwatch table. Objects stay OWNED by the login that migrates (the
--                      database's bootstrap user in compose): TimescaleDB refuses background
--                      policies (retention, compression, refresh) on a hypertable whose owner
--                      cannot log in, so a NOLOGIN owner would break TimescaleDB mode.
--   stackwatch_writer  the sinks (every topic's table, registry sync into `stacks`), the alert
--                      dispatcher (notifications, its outbox and scheduler state,
--                      alerts.escalation_level), the ack API and the
--                      ack page (read alerts/stacks/aggregates, record used links): SELECT,
--                      INSERT and, where rows are revised, UPDATE on exactly those tables. No
--                      DELETE, TRUNCATE or DDL; no views; not schema_migrations. SELECT is
--                      needed on the tables it writes: the writers stage batches in a temporary
--                      table `AS SELECT … WITH NO DATA` and upsert with ON CONFLICT.
--   stackwatch_reader  Grafana (and reports): SELECT on every table and view of the schema
--                      except the verbatim frames (raw_frames: the view raw_frame_verdicts has
--                      every column but the text), dead-letter payloads (dead_letters.payload)
--                      and the loggers' password hashes (stacks password*), which are
--                      column-level grants (a table-level SELECT would cover every column),
--                      and not schema_migrations.
--
-- Roles are cluster-wide: several databases of one server (and concurrent first migrations)
-- share them, so each is created only when missing. Grants are per schema (current_schema(),
-- where these migrations create their tables). A later migration that adds a table grants it
-- explicitly (reader: SELECT unless it holds secrets; writer: only what a process writes), and
-- one that adds a column to dead_letters or stacks grants the reader that column if harmless.

DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['stackwatch_owner', 'stackwatch_writer', 'stackwatch_reader']
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another database's migration created it meanwhile
            END;
        END IF;
    END LOOP;
END
$$;

-- Schema and database level (names are dynamic: the schema of these migrations, this database).
DO $$
BEGIN
    EXECUTE format('GRANT USAGE, CREATE ON SCHEMA %I TO stackwatch_owner', current_schema());
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO stackwatch_writer, stackwatch_reader',
                   current_schema());
    EXECUTE format('GRANT ALL ON ALL TABLES IN SCHEMA %I TO stackwatch_owner', current_schema());
    EXECUTE format('GRANT ALL ON ALL SEQUENCES IN SCHEMA %I TO stackwatch_owner',
                   current_schema());
    -- CONNECT and TEMPORARY (the writers stage batches in temporary tables) are PUBLIC's by
    -- default and stay so: a database-level GRANT needs the database's owner, which the
    -- migrating login need not be (and PGlite refuses it).
END
$$;

-- Every frame's verdict without its text: what the reader (the Operations dashboard's
-- "Rejected frames") reads instead of raw_frames. A view, not column grants: TimescaleDB
-- pushes a column-level GRANT on a compressed hypertable down to its compressed table, which
-- has no such columns, and fails.
CREATE OR REPLACE VIEW raw_frame_verdicts AS
SELECT received_at, peer, frame_md5, mn, cn, verdict, reasons, gateway FROM raw_frames;
COMMENT ON VIEW raw_frame_verdicts IS
    'raw_frames without the frame text: gateway verdicts for dashboards (read-only role).';

-- Writer: what each process writes, nothing else.
GRANT SELECT, INSERT, UPDATE ON stacks TO stackwatch_writer;                -- sinks: registry sync
GRANT SELECT, INSERT ON raw_frames, readings, dead_letters TO stackwatch_writer;   -- sinks
GRANT SELECT, INSERT, UPDATE
    ON minute_aggregates, hour_aggregates, day_aggregates, limit_verdicts
    TO stackwatch_writer;                                                   -- sinks: revisions
GRANT SELECT, INSERT, UPDATE ON alerts TO stackwatch_writer;     -- sinks; dispatcher escalation
GRANT SELECT, INSERT ON alert_events TO stackwatch_writer;                  -- sinks; ack page
GRANT SELECT, INSERT, UPDATE ON notifications TO stackwatch_writer;         -- dispatcher
GRANT SELECT, INSERT ON ack_link_uses TO stackwatch_writer;                 -- ack page
GRANT SELECT, INSERT, UPDATE ON notification_outbox, notify_state TO stackwatch_writer;  -- dispatcher

-- Reader: every table and view, then column lists for the tables holding secrets.
DO $$
DECLARE
    guarded record;
    columns text;
BEGIN
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO stackwatch_reader',
                   current_schema());
    REVOKE ALL ON schema_migrations, raw_frames FROM stackwatch_reader;  -- raw_frame_verdicts
    FOR guarded IN
        SELECT * FROM (VALUES ('dead_letters', '^payload$'),
                              ('stacks', '^password')) AS g (tbl, hidden)
    LOOP
        EXECUTE format('REVOKE ALL ON %I FROM stackwatch_reader', guarded.tbl);
        SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO columns
        FROM pg_attribute a
        WHERE a.attrelid = format('%I.%I', current_schema(), guarded.tbl)::regclass
          AND a.attnum > 0 AND NOT a.attisdropped AND a.attname !~ guarded.hidden;
        EXECUTE format('GRANT SELECT (%s) ON %I TO stackwatch_reader', columns, guarded.tbl);
    END LOOP;
END
$$;
