-- 0006_limit_verdicts: every limit's verdict on every judged hour and day, the validity of
-- emission totals, and the month/quarter statistics the Compliance dashboard shows
-- (docs/limits.md). Plain SQL views: the same in plain and TimescaleDB mode.

-- An hour's mass exists only for a valid hour; a day's total sums its valid hours but is a
-- valid daily total only when the day is valid (>= 20 valid hours, HJ 212-2017 App. D).
ALTER TABLE hour_aggregates ADD COLUMN IF NOT EXISTS mass_valid boolean;
ALTER TABLE day_aggregates ADD COLUMN IF NOT EXISTS mass_valid boolean;
COMMENT ON COLUMN day_aggregates.mass_valid IS
    'The day''s emission total is valid: the day has >= 20 valid hours (HJ 212-2017 App. D).';

-- One row per period and applicable limit: the legal standard, each ultra-low program, the
-- workshop (fugitive) value, each judged on its own O2 basis (`ref_o2`; NULL = measured).
-- Written with the hour/day aggregate it belongs to, under the same revision rule.
CREATE TABLE IF NOT EXISTS limit_verdicts (
    stack_id      text NOT NULL,
    factor        text NOT NULL,
    period        text NOT NULL CHECK (period IN ('hour', 'day')),
    period_start  timestamptz NOT NULL,
    program       text NOT NULL,                 -- e.g. NATL-2024-ULE, GB13271-2014-special, PERMIT
    kind          text NOT NULL CHECK (kind IN ('ultra_low', 'standard', 'fugitive')),
    row_id        text,                          -- catalogue row (docs/limits.md#catalogue-rows) or 'override'
    status        text NOT NULL CHECK (status IN
                      ('compliant', 'warning', 'exceedance', 'invalid', 'unjudged', 'stopped')),
    level         text CHECK (level IS NULL OR level IN ('within', 'warning', 'above_ultra_low',
                      'above_standard', 'above_fugitive')),
    term_zh       text,                          -- 达标 / 预警 / 超过超低排放限值 / 超标 / …
    severity      text,
    value         double precision,              -- the mean compared, on this limit's basis
    basis         text CHECK (basis IS NULL OR basis IN ('converted', 'measured')),
    ref_o2        double precision,
    o2_from_row   text,                          -- row the O2 basis was taken from, if inherited
    limit_mg_m3   double precision NOT NULL CHECK (limit_mg_m3 > 0),
    warning_mg_m3 double precision,
    unconfirmed   boolean NOT NULL DEFAULT false,
    reason        text NOT NULL,
    revision      integer NOT NULL DEFAULT 0 CHECK (revision >= 0),
    computed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stack_id, factor, period, period_start, program, kind)
);
CREATE INDEX IF NOT EXISTS limit_verdicts_stack_time_idx
    ON limit_verdicts (stack_id, period_start DESC);
COMMENT ON TABLE limit_verdicts IS
    'Each judged hour/day against each limit in force (program, kind, O2 basis, level).';

-- Monthly ultra-low conformity (环大气〔2019〕35号; 2024 cement and coking opinions): per
-- stack, factor, program and Beijing month, the share of valid production hours within the
-- limit. Invalid, stopped and unjudged hours are not counted. meets_95 uses integer
-- arithmetic (20 × compliant >= 19 × judged), so 94.99 % never passes.
CREATE OR REPLACE VIEW conformity_monthly AS
SELECT
    stack_id,
    factor,
    program,
    kind,
    date_trunc('month', period_start, 'Asia/Shanghai') AS period_start,
    min(limit_mg_m3) AS limit_mg_m3,
    min(ref_o2) AS ref_o2,
    sum(CASE WHEN status IN ('compliant', 'warning', 'exceedance') THEN 1 ELSE 0 END)
        AS judged_hours,
    sum(CASE WHEN status IN ('compliant', 'warning') THEN 1 ELSE 0 END) AS compliant_hours,
    sum(CASE WHEN status = 'exceedance' THEN 1 ELSE 0 END) AS exceedance_hours,
    sum(CASE WHEN status = 'invalid' THEN 1 ELSE 0 END) AS invalid_hours,
    sum(CASE WHEN status = 'stopped' THEN 1 ELSE 0 END) AS stopped_hours,
    100.0 * sum(CASE WHEN status IN ('compliant', 'warning') THEN 1 ELSE 0 END)
        / nullif(sum(CASE WHEN status IN ('compliant', 'warning', 'exceedance') THEN 1 ELSE 0 END),
                 0) AS conformity_pct,
    coalesce(
        20 * sum(CASE WHEN status IN ('compliant', 'warning') THEN 1 ELSE 0 END)
            >= 19 * sum(CASE WHEN status IN ('compliant', 'warning', 'exceedance') THEN 1 ELSE 0 END)
        AND sum(CASE WHEN status IN ('compliant', 'warning', 'exceedance') THEN 1 ELSE 0 END) > 0,
        false
    ) AS meets_95
FROM limit_verdicts
WHERE period = 'hour'
GROUP BY stack_id, factor, program, kind, date_trunc('month', period_start, 'Asia/Shanghai');

COMMENT ON VIEW conformity_monthly IS
    'Per stack, factor, program and Beijing month: judged/compliant hours and the 95 % test.';

-- Valid-data capture rate α (有效数据捕集率, HJ 75): valid hours / running hours, where running
-- hours = the hours of the period from the stack's first recorded hour to the period's end (or
-- now, for the period in progress) minus the stopped hours. Hours with no data at all count as
-- missing, which is the point of the statistic.
CREATE OR REPLACE VIEW capture_rate AS
WITH first_hour AS (
    SELECT stack_id, min(period_start) AS first_at FROM hour_aggregates GROUP BY stack_id
),
periods AS (
    SELECT
        h.stack_id,
        h.factor,
        p.granularity,
        date_trunc(p.granularity, h.period_start, 'Asia/Shanghai') AS period_start,
        sum(CASE WHEN h.valid AND NOT h.stopped THEN 1 ELSE 0 END) AS valid_hours,
        sum(CASE WHEN h.stopped THEN 1 ELSE 0 END) AS stopped_hours,
        count(*) AS recorded_hours
    FROM hour_aggregates h
    CROSS JOIN (VALUES ('month'), ('quarter')) AS p (granularity)
    GROUP BY h.stack_id, h.factor, p.granularity,
             date_trunc(p.granularity, h.period_start, 'Asia/Shanghai')
),
spans AS (
    SELECT
        periods.*,
        greatest(periods.period_start, f.first_at) AS counted_from,
        least(
            ((periods.period_start AT TIME ZONE 'Asia/Shanghai')
                + CASE periods.granularity WHEN 'month' THEN INTERVAL '1 month'
                                           ELSE INTERVAL '3 months' END)
                AT TIME ZONE 'Asia/Shanghai',
            greatest(date_trunc('hour', now()), f.first_at + INTERVAL '1 hour')
        ) AS counted_to
    FROM periods JOIN first_hour f USING (stack_id)
)
SELECT
    stack_id,
    factor,
    granularity,
    period_start,
    valid_hours,
    stopped_hours,
    recorded_hours,
    round(extract(epoch FROM counted_to - counted_from) / 3600)::integer AS period_hours,
    round(extract(epoch FROM counted_to - counted_from) / 3600)::integer - stopped_hours
        AS running_hours,
    100.0 * valid_hours
        / nullif(round(extract(epoch FROM counted_to - counted_from) / 3600) - stopped_hours, 0)
        AS capture_pct
FROM spans;

COMMENT ON VIEW capture_rate IS
    'Per stack, factor and Beijing month/quarter: valid hours / (period hours - stopped hours).';

-- Emission totals per Beijing month: the hours' masses (eq. 33), with how many days of the
-- month had a valid daily total.
CREATE OR REPLACE VIEW emission_totals_monthly AS
WITH hours AS (
    SELECT stack_id, factor, date_trunc('month', period_start, 'Asia/Shanghai') AS period_start,
           sum(mass_kg) AS mass_kg,
           sum(CASE WHEN mass_kg IS NOT NULL THEN 1 ELSE 0 END) AS hours_with_mass
    FROM hour_aggregates
    GROUP BY stack_id, factor, date_trunc('month', period_start, 'Asia/Shanghai')
),
days AS (
    SELECT stack_id, factor, date_trunc('month', period_start, 'Asia/Shanghai') AS period_start,
           count(*) AS days_closed,
           sum(CASE WHEN mass_valid THEN 1 ELSE 0 END) AS days_valid
    FROM day_aggregates
    GROUP BY stack_id, factor, date_trunc('month', period_start, 'Asia/Shanghai')
)
SELECT h.stack_id, h.factor, h.period_start, h.mass_kg, h.hours_with_mass,
       coalesce(d.days_closed, 0) AS days_closed, coalesce(d.days_valid, 0) AS days_valid
FROM hours h
LEFT JOIN days d USING (stack_id, factor, period_start)
WHERE h.mass_kg IS NOT NULL;

COMMENT ON VIEW emission_totals_monthly IS
    'Per stack, pollutant and Beijing month: emitted kg (sum of hourly masses), valid days.';
