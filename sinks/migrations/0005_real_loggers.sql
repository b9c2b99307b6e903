-- Real data loggers (docs/loggers.md): which system a reading came from, whether a period
-- was a stopped stack (停运), how many minutes valid minute records covered (a 10-minute
-- record covers ten), and the logger's own 2061/2031 value beside the platform's mean.
-- Nullable columns or constant defaults only: both are allowed on compressed hypertables.

ALTER TABLE readings ADD COLUMN IF NOT EXISTS st text;   -- HJ 212 system code: 31 flue gas, 32 wastewater, 91 interaction
COMMENT ON COLUMN readings.st IS
    'HJ 212 ST of the frame (31 flue gas, 32 wastewater, 91 interaction); only 31 is averaged.';

ALTER TABLE minute_aggregates ADD COLUMN IF NOT EXISTS stopped boolean NOT NULL DEFAULT false;
ALTER TABLE minute_aggregates ADD COLUMN IF NOT EXISTS coverage_minutes double precision;
ALTER TABLE hour_aggregates ADD COLUMN IF NOT EXISTS stopped boolean NOT NULL DEFAULT false;
ALTER TABLE hour_aggregates ADD COLUMN IF NOT EXISTS coverage_minutes double precision;
ALTER TABLE hour_aggregates ADD COLUMN IF NOT EXISTS logger_mean double precision;
ALTER TABLE day_aggregates ADD COLUMN IF NOT EXISTS stopped boolean NOT NULL DEFAULT false;
ALTER TABLE day_aggregates ADD COLUMN IF NOT EXISTS coverage_minutes double precision;
ALTER TABLE day_aggregates ADD COLUMN IF NOT EXISTS logger_mean double precision;
COMMENT ON COLUMN hour_aggregates.stopped IS
    'The stack was stopped (停运) for more than 15 minutes of the hour: not judged, not missing.';
COMMENT ON COLUMN hour_aggregates.coverage_minutes IS
    'Minutes of the hour covered by valid minute records (HJ 75: valid with >= 45).';
COMMENT ON COLUMN hour_aggregates.logger_mean IS
    'The logger''s own hourly value (CN 2061 -Avg), when it sent one.';
