-- Acknowledge-from-the-message (docs/ack-page.md): every notification carries a signed link
-- per recipient and alert; the page records each link id (jti) that has acknowledged, so a
-- link acknowledges once, also across restarts of the page. Plain table in both modes (a
-- few rows a day, looked up by primary key).

CREATE TABLE IF NOT EXISTS ack_link_uses (
    jti        text PRIMARY KEY,                  -- the link's id (signed inside the token)
    alert_id   text NOT NULL,
    recipient  text NOT NULL,                     -- who the link was sent to = who acknowledged
    reason     text NOT NULL,
    issued_at  timestamptz NOT NULL,              -- when the link was signed (sent)
    used_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ack_link_uses_alert_idx ON ack_link_uses (alert_id);
COMMENT ON TABLE ack_link_uses IS
    'Acknowledgement links (jti) that have been used; a used link is refused (docs/ack-page.md).';
