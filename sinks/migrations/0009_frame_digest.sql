-- Passwords out of storage (docs/security.md): the gateway masks every PW/NewPW value
-- (`PW=******`) before a frame is produced, so `raw_frames.text` is no longer byte-for-byte
-- what the logger sent. `sha256` keeps the evidence: the SHA-256 (hex) of the bytes as
-- received; whoever holds the logger's password can put it back and check. NULL for rows
-- written before this migration (their text is the wire's).
ALTER TABLE raw_frames ADD COLUMN IF NOT EXISTS sha256 text
    CHECK (sha256 IS NULL OR sha256 ~ '^[0-9a-f]{64}$');
COMMENT ON COLUMN raw_frames.sha256 IS
    'SHA-256 (hex) of the frame as received, before its password was masked in text.';

-- No password, in any form, is kept in the database any more (the registry file is the only
-- place, as salted scrypt): drop the unsalted digests stored by earlier versions.
UPDATE stacks SET password_sha256 = NULL WHERE password_sha256 IS NOT NULL;
