-- 0004_retention (TimescaleDB mode only): default retention policies (drop whole old chunks).
--
-- DEFAULTS, NOT LAW. How long original monitoring records must be kept is set by regulation
-- (reportedly >= 5 years for original monitoring records under the 2021 排污许可管理条例 —
-- UNCONFIRMED, see README "Storage"). The defaults follow the tiering "raw shortest,
-- aggregates longest" and are changed per deployment with
-- `stackwatch db retention TABLE --days N | --forever` (sinks.schema.set_retention), which
-- replaces the policy below; later migrations never touch a policy again:
--   raw_frames         180 days  (verbatim frames: evidence for disputes about recent data)
--   readings           730 days  (decoded values incl. 30 s real-time data)
--   minute_aggregates  730 days
--   hour_aggregates    no policy (the compliance record: 95 % monthly rule, mass totals)
--   day_aggregates     no policy
-- The plain PostgreSQL mode has no retention at all (nothing is ever dropped there).
SELECT add_retention_policy('raw_frames', INTERVAL '180 days', if_not_exists => true);
SELECT add_retention_policy('readings', INTERVAL '730 days', if_not_exists => true);
SELECT add_retention_policy('minute_aggregates', INTERVAL '730 days', if_not_exists => true);
