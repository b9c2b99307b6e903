-- stackwatch:no-transaction
-- (CREATE MATERIALIZED VIEW … WITH (timescaledb.continuous) cannot run inside a transaction;
--  the runner executes this file statement by statement in autocommit. Every statement is
--  idempotent, so a run interrupted half-way is simply repeated.)
--
-- 0003_compliance (TimescaleDB mode): replaces sinks/migrations/0003_compliance.sql with
-- continuous aggregates of the SAME names and columns (read that file for what each column
-- means and why). Differences are only in mechanics:
--  * time_bucket(…, 'Asia/Shanghai') instead of date_trunc(…, 'Asia/Shanghai'): both return
--    the timestamptz of the Beijing-local midnight / first of month;
--  * materialized_only = false (real-time aggregation): buckets after the materialisation
--    watermark (today, this month) are computed from hour_aggregates at query time, so the
--    current day/month is always live. A late or revised hour inside an already materialised
--    bucket shows after the next refresh (the policies below, hourly); until then that bucket
--    can differ from the plain view's answer by the late hours.

CREATE MATERIALIZED VIEW IF NOT EXISTS compliance_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT
    stack_id,
    factor,
    time_bucket(INTERVAL '1 day', period_start, 'Asia/Shanghai') AS period_start,
    count(*) AS hours_total,
    sum(CASE WHEN valid THEN 1 ELSE 0 END) AS valid_hours,
    sum(CASE WHEN valid AND limit_mg_m3 IS NOT NULL THEN 1 ELSE 0 END) AS judged_hours,
    sum(CASE WHEN valid AND coalesce(zs_mean, mean) <= limit_mg_m3 THEN 1 ELSE 0 END)
        AS compliant_hours,
    100.0 * sum(CASE WHEN valid AND coalesce(zs_mean, mean) <= limit_mg_m3 THEN 1 ELSE 0 END)
        / nullif(sum(CASE WHEN valid AND limit_mg_m3 IS NOT NULL THEN 1 ELSE 0 END), 0)
        AS compliance_pct,
    avg(CASE WHEN valid THEN coalesce(zs_mean, mean) END) AS mean_value,
    max(CASE WHEN valid THEN coalesce(zs_mean, mean) END) AS max_value,
    sum(mass_kg) AS mass_kg
FROM hour_aggregates
GROUP BY stack_id, factor, time_bucket(INTERVAL '1 day', period_start, 'Asia/Shanghai')
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS compliance_monthly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT
    stack_id,
    factor,
    time_bucket(INTERVAL '1 month', period_start, 'Asia/Shanghai') AS period_start,
    count(*) AS hours_total,
    sum(CASE WHEN valid THEN 1 ELSE 0 END) AS valid_hours,
    sum(CASE WHEN valid AND limit_mg_m3 IS NOT NULL THEN 1 ELSE 0 END) AS judged_hours,
    sum(CASE WHEN valid AND coalesce(zs_mean, mean) <= limit_mg_m3 THEN 1 ELSE 0 END)
        AS compliant_hours,
    100.0 * sum(CASE WHEN valid AND coalesce(zs_mean, mean) <= limit_mg_m3 THEN 1 ELSE 0 END)
        / nullif(sum(CASE WHEN valid AND limit_mg_m3 IS NOT NULL THEN 1 ELSE 0 END), 0)
        AS compliance_pct,
    avg(CASE WHEN valid THEN coalesce(zs_mean, mean) END) AS mean_value,
    max(CASE WHEN valid THEN coalesce(zs_mean, mean) END) AS max_value,
    sum(mass_kg) AS mass_kg
FROM hour_aggregates
GROUP BY stack_id, factor, time_bucket(INTERVAL '1 month', period_start, 'Asia/Shanghai')
WITH NO DATA;

-- Refresh policies. Late hours (re-sent data, recomputed revisions) keep arriving for weeks,
-- so each refresh re-examines a window reaching back past the previous month's close:
--   daily:   the last 40 days, every hour, leaving the newest hour to real-time aggregation;
--   monthly: the last 3 months, every hour (a window must span >= 2 buckets).
-- Only invalidated buckets are recomputed, so wide windows cost little when nothing changed.
SELECT add_continuous_aggregate_policy('compliance_daily',
    start_offset => INTERVAL '40 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '1 hour', if_not_exists => true);
SELECT add_continuous_aggregate_policy('compliance_monthly',
    start_offset => INTERVAL '3 months', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '1 hour', if_not_exists => true);
