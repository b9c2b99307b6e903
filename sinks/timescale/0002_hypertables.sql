-- 0002_hypertables (TimescaleDB mode only; plain PostgreSQL mode has no 0002).
-- Hypertables, chunk intervals, compression settings and compression policies.
--
-- Chunk intervals are sized for a regional centre at full scale (reference load: 5 000 stacks
-- × 9 factors — PM, SO2, NOx, O2, temperature, pressure, humidity, velocity, flow, real-time
-- data every 30 s, minute data every 10 min) so that the chunks being written (one per
-- hypertable, ≈ 18 GB in all with indexes) fit in about a quarter of a 64–96 GB database
-- server's memory (Timescale's sizing rule). A smaller region simply gets smaller chunks; a
-- larger one runs `SELECT set_chunk_time_interval(...)` (applies to new chunks only):
--   raw_frames   5 000 × (2 880 real-time + 144 minute + 24 hour + 1 day) frames/day
--                ≈ 15.2 M frames/day × ~0.9 kB           ≈ 13.7 GB/day → 6 h  ≈ 3.4 GB/chunk
--   readings     5 000 × 9 × 3 049 rows/day = 137 M rows/day × ~230 B (row + 2 indexes)
--                ≈ 31.6 GB/day                          → 6 h  ≈ 7.9 GB/chunk
--   minute_agg.  5 000 × 9 × 1 440 = 64.8 M rows/day × ~200 B ≈ 13 GB/day → 12 h ≈ 6.5 GB/chunk
--   hour_agg.    5 000 × 9 × 24 = 1.08 M rows/day × ~230 B ≈ 0.25 GB/day → 7 d ≈ 1.7 GB/chunk
--   day_agg.     5 000 × 9 = 45 000 rows/day × ~200 B      ≈ 9 MB/day    → 180 d ≈ 1.6 GB/chunk
-- create_default_indexes => false: every primary key already contains the time column and the
-- (stack_id, time DESC) indexes of 0001 serve "latest per stack"; chunk exclusion serves the
-- pure time ranges, so a separate time index would only cost write amplification.

SELECT create_hypertable('raw_frames', by_range('received_at', INTERVAL '6 hours'),
                         create_default_indexes => false, if_not_exists => true);
SELECT create_hypertable('readings', by_range('data_time', INTERVAL '6 hours'),
                         create_default_indexes => false, if_not_exists => true);
SELECT create_hypertable('minute_aggregates', by_range('period_start', INTERVAL '12 hours'),
                         create_default_indexes => false, if_not_exists => true);
SELECT create_hypertable('hour_aggregates', by_range('period_start', INTERVAL '7 days'),
                         create_default_indexes => false, if_not_exists => true);
SELECT create_hypertable('day_aggregates', by_range('period_start', INTERVAL '180 days'),
                         create_default_indexes => false, if_not_exists => true);

-- Compression: segmentby = the series identity, orderby = time DESC. Each compressed batch is
-- then one stack × factor series in time order, which delta-of-delta (time) and Gorilla (float)
-- encodings shrink best, and a per-stack/factor query decompresses only its own segments.
-- Raw frames segment by MN (what an inspector looks up) — the text column compresses as a
-- dictionary/LZ block either way.
ALTER TABLE raw_frames SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'mn',
    timescaledb.compress_orderby = 'received_at DESC, peer, frame_md5'
);
ALTER TABLE readings SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'stack_id, factor, cn',
    timescaledb.compress_orderby = 'data_time DESC'
);
ALTER TABLE minute_aggregates SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'stack_id, factor',
    timescaledb.compress_orderby = 'period_start DESC'
);
ALTER TABLE hour_aggregates SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'stack_id, factor',
    timescaledb.compress_orderby = 'period_start DESC'
);
ALTER TABLE day_aggregates SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'stack_id, factor',
    timescaledb.compress_orderby = 'period_start DESC'
);

-- Compress once late data is unlikely. Loggers re-send (补传, HJ 212-2025 RF=1) after link
-- outages, and late hours recompute aggregates; Timescale >= 2.11 accepts inserts/updates into
-- compressed chunks, but they are slower, so the bulk of late traffic should land before:
--   raw_frames / readings 2 days, minutes 7 days, hours 35 days (a month closes + 4 days for
--   corrections before the monthly 95 % figure is reported), days 180 days.
SELECT add_compression_policy('raw_frames', INTERVAL '2 days', if_not_exists => true);
SELECT add_compression_policy('readings', INTERVAL '2 days', if_not_exists => true);
SELECT add_compression_policy('minute_aggregates', INTERVAL '7 days', if_not_exists => true);
SELECT add_compression_policy('hour_aggregates', INTERVAL '35 days', if_not_exists => true);
SELECT add_compression_policy('day_aggregates', INTERVAL '180 days', if_not_exists => true);
