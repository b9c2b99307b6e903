-- 0007 (TimescaleDB mode only): limit_verdicts as a hypertable. One row per hour, factor and
-- program (≈ 2–3 programs × 4 pollutants × 24 h per stack and day), 5 000 stacks ≈ 1.4 M
-- rows/day × ~250 B ≈ 0.35 GB/day → 7-day chunks ≈ 2.4 GB, the size of hour_aggregates'.
SELECT create_hypertable('limit_verdicts', by_range('period_start', INTERVAL '7 days'),
                         create_default_indexes => false, if_not_exists => true,
                         migrate_data => true);
