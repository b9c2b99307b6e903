-- 0003_compliance (plain PostgreSQL mode): compliance_daily / compliance_monthly as plain views.
-- In TimescaleDB mode sinks/timescale/0003_compliance.sql replaces this file with continuous
-- aggregates of the SAME names and columns, so dashboards and reports work on either.
--
-- What is counted (DOMAIN.md §3.2, LIMITS.md N4): ultra-low limits are HOURLY-mean limits, and
-- ultra-low status needs >= 95 % of the valid hours of a month to meet them. Per stack, factor
-- and Beijing-time day/month (China Standard Time, UTC+8, no DST — the reporting day of HJ 212
-- day data, 00:00–24:00 local):
--   hours_total      hour rows recorded
--   valid_hours      hours valid under HJ 75 (>= 45 valid minutes, not flagged F/M/D/C/T/B)
--   judged_hours     valid hours that have a limit (limit_mg_m3 stored with the hour)
--   compliant_hours  judged hours whose value <= limit; the value is the reference-O2
--                    converted mean (zs_mean) where the stack has a reference O2, else the
--                    measured mean (LIMITS.md N3: no O2 correction on a measured basis)
--   compliance_pct   100 × compliant_hours / judged_hours (NULL when nothing was judged);
--                    numeric and unrounded, so a 94.99 % month is never shown as 95 %
--   mean_value / max_value  over valid hours, same value basis as above
--   mass_kg          sum of the hours' emission amounts (App. D eq. 33; substitution, if any,
--                    is the aggregator's, carried in hour_aggregates.mass_kg)
-- Integer counts use sum(CASE …) instead of count(*) FILTER, the form continuous aggregates
-- accept, so both modes run the same expressions.

CREATE OR REPLACE VIEW compliance_daily AS
SELECT
    stack_id,
    factor,
    date_trunc('day', period_start, 'Asia/Shanghai') AS period_start,
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
GROUP BY stack_id, factor, date_trunc('day', period_start, 'Asia/Shanghai');

COMMENT ON VIEW compliance_daily IS
    'Per stack, factor and Beijing day: valid, judged and compliant hours, rate, mass.';

CREATE OR REPLACE VIEW compliance_monthly AS
SELECT
    stack_id,
    factor,
    date_trunc('month', period_start, 'Asia/Shanghai') AS period_start,
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
GROUP BY stack_id, factor, date_trunc('month', period_start, 'Asia/Shanghai');

COMMENT ON VIEW compliance_monthly IS
    'Per stack, factor and Beijing month: valid, judged and compliant hours (95 % rule), mass.';
