-- Durable notification outbox (docs/notifications.md). The dispatcher writes one row per
-- (message, destination) — a message is one notification about a group of alert events, a
-- destination one recipient's channel — in the SAME transaction as the scheduler state that
-- says "this was decided", and before the alert-topic offsets are committed. A delivery
-- worker then sends the pending rows with back-off until each is delivered or expires, so
-- neither a receiver outage nor a restart loses a message. `message_id` is the natural key
-- of the decision: re-writing the same decision is a no-op (ON CONFLICT DO NOTHING).
-- Plain table in both modes (a few rows an hour, read by status and destination).

CREATE TABLE IF NOT EXISTS notification_outbox (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id       text NOT NULL,                -- hash of the scheduler's decision
    destination      text NOT NULL,                -- 'recipient <target>' (no secrets)
    recipient        text NOT NULL,                -- recipient name in the routing file
    channel          text NOT NULL,                -- webhook | email
    channel_id       text NOT NULL,                -- hash naming the channel; never its URL
    kind             text NOT NULL
        CHECK (kind IN ('firing', 'repeat', 'escalation', 'resolved', 'heartbeat')),
    alert_ids        text[] NOT NULL DEFAULT '{}',
    event_seqs       integer[] NOT NULL DEFAULT '{}',
    message          jsonb NOT NULL,               -- the Notification / Heartbeat document
    status           text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'expired', 'failed')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    created_at       timestamptz NOT NULL,         -- dispatcher clock when decided
    next_attempt_at  timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,         -- given up (status expired) after this
    last_error       text,
    finished_at      timestamptz,                  -- delivered / expired / failed at
    UNIQUE (message_id, destination)
);
-- The worker reads the oldest pending row of every destination (per-destination order).
CREATE INDEX IF NOT EXISTS notification_outbox_pending_idx
    ON notification_outbox (destination, id) WHERE status = 'pending';
COMMENT ON TABLE notification_outbox IS
    'Notifications to deliver, one row per message and destination (docs/notifications.md).';

-- The dispatcher's scheduler state (groups, timers, dedup marks), saved in the same
-- transaction as the outbox rows it decided, so the two never disagree after a crash.
CREATE TABLE IF NOT EXISTS notify_state (
    name      text PRIMARY KEY,                    -- dispatcher name (its consumer group)
    state     jsonb NOT NULL,
    saved_at  timestamptz NOT NULL DEFAULT now()
);
