-- lifesweep schema, version 1 (SQLite). Described in docs/schema.md.
--
-- Times are unix epoch seconds (REAL) read from the database clock,
-- (julianday('now') - 2440587.5) * 86400.0, so that leases of workers on different hosts are
-- measured on one clock. (unixepoch('subsec') would read better but needs SQLite 3.42, newer
-- than the sqlite3 shell of many systems.) The store also marks the file with
-- PRAGMA application_id when it applies this migration.

-- One row per sweep name. A sweep is extended by submitting a config with more axis values
-- under the same name; its fixed parameters never change.
CREATE TABLE sweeps (
    id               INTEGER PRIMARY KEY,
    name             TEXT    NOT NULL UNIQUE,
    description      TEXT    NOT NULL DEFAULT '',
    -- The config file of the latest submission, as written.
    config_toml      TEXT    NOT NULL,
    -- Canonical JSON of the parameters every job shares (SweepSpec.base).
    base_params_json TEXT    NOT NULL,
    -- [{"key": "m_factor", "values": [1, 5]}, ...]: every axis of every submission, merged.
    axes_json        TEXT    NOT NULL,
    created_at       REAL    NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    updated_at       REAL    NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
);

-- One row per training run to do: a grid point and a seed.
CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY,
    sweep_id         INTEGER NOT NULL REFERENCES sweeps (id) ON DELETE CASCADE,
    -- Hash of the full canonical parameters (lifesweep_spec::job_key).
    job_key          TEXT    NOT NULL,
    -- Hash of the parameters with the seed zeroed: equal for the seeds of one grid point.
    point_key        TEXT    NOT NULL,
    -- Canonical JSON of the job's TrainParams.
    params_json      TEXT    NOT NULL,
    state            TEXT    NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    -- Claims so far (a released job gives its claim back).
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     INTEGER NOT NULL CHECK (max_attempts >= 1),
    -- The worker holding the job (state 'running') or the last one that held it.
    worker_id        TEXT,
    lease_expires_at REAL,
    heartbeat_at     REAL,
    claimed_at       REAL,
    -- The last error of a job that is not done.
    error            TEXT,
    created_at       REAL    NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    updated_at       REAL    NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    UNIQUE (sweep_id, job_key)
);

-- Claiming: the lowest queued id (of any sweep, or of one sweep), and expired leases.
CREATE INDEX jobs_by_state ON jobs (state, id);
CREATE INDEX jobs_by_sweep_state ON jobs (sweep_id, state, id);
-- Claiming the other seeds of a grid point together.
CREATE INDEX jobs_by_point ON jobs (sweep_id, point_key, id);
-- Re-queueing the jobs of a dead worker.
CREATE INDEX jobs_by_running_worker ON jobs (worker_id) WHERE state = 'running';

-- Worker processes, for resume: a worker recorded on this host whose pid is gone is dead.
CREATE TABLE workers (
    id         TEXT    PRIMARY KEY,
    host       TEXT    NOT NULL,
    pid        INTEGER NOT NULL,
    device     TEXT    NOT NULL,
    started_at REAL    NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    last_seen  REAL    NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    stopped_at REAL
);

CREATE INDEX workers_by_host ON workers (host);

-- One row per finished run (jobs in state 'done'). REAL metrics are NULL where the value was
-- not a finite number (SQLite stores NaN as NULL).
CREATE TABLE results (
    job_id           INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    success_rate     REAL,
    training_success INTEGER NOT NULL CHECK (training_success IN (0, 1)),
    cell_accuracy    REAL,
    final_loss       REAL,
    -- [{"batch": 1000, "loss": 0.12}, ...]; a non-finite loss is null.
    loss_curve_json  TEXT    NOT NULL,
    param_count      INTEGER NOT NULL,
    wall_seconds     REAL,
    device           TEXT    NOT NULL,
    worker_id        TEXT    NOT NULL,
    attempt          INTEGER NOT NULL,
    -- The worker's clock, around training and evaluation.
    started_at       REAL    NOT NULL,
    finished_at      REAL    NOT NULL,
    weights_path     TEXT,
    -- The database clock, when the result was written (runs per minute).
    recorded_at      REAL    NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
);

CREATE INDEX results_by_recorded ON results (recorded_at);

-- A result row and a done job go together: writing a run's result marks its job done, in the
-- same statement (so that a worker finishes a job with one INSERT, holding the write lock for
-- as short a time as possible).
CREATE TRIGGER results_mark_job_done AFTER INSERT ON results
BEGIN
    UPDATE jobs
    SET state = 'done', lease_expires_at = NULL, error = NULL,
        updated_at = ((julianday('now') - 2440587.5) * 86400.0)
    WHERE id = NEW.job_id;
END;

-- Every job with its parameters as columns and its result, for sqlite3 and pandas:
--   sqlite3 lifesweep.db "select steps, m_factor, avg(training_success) from runs
--                         where state = 'done' group by 1, 2"
-- Booleans are 0/1; solve_layers is a JSON list. Metrics are NULL until the job is done.
CREATE VIEW runs AS
SELECT
    j.id                                               AS job_id,
    s.name                                             AS sweep,
    j.job_key                                          AS job_key,
    j.state                                            AS state,
    j.attempts                                         AS attempts,
    j.error                                            AS error,
    json_extract(j.params_json, '$.rule')              AS rule,
    json_extract(j.params_json, '$.steps')             AS steps,
    json_extract(j.params_json, '$.seed')              AS seed,
    json_extract(j.params_json, '$.m_factor')          AS m_factor,
    json_extract(j.params_json, '$.d_factor')          AS d_factor,
    json_extract(j.params_json, '$.presolve')          AS presolve,
    json_extract(j.params_json, '$.solve_layers')      AS solve_layers,
    json_extract(j.params_json, '$.use_sigmoid')       AS use_sigmoid,
    json_extract(j.params_json, '$.activation')        AS activation,
    json_extract(j.params_json, '$.normalize')         AS normalize,
    json_extract(j.params_json, '$.normalize_shift')   AS normalize_shift,
    json_extract(j.params_json, '$.batches')           AS batches,
    json_extract(j.params_json, '$.batch_size')        AS batch_size,
    json_extract(j.params_json, '$.learning_rate')     AS learning_rate,
    json_extract(j.params_json, '$.board_size')        AS board_size,
    json_extract(j.params_json, '$.density')           AS density,
    json_extract(j.params_json, '$.loss_every')        AS loss_every,
    json_extract(j.params_json, '$.save_weights')      AS save_weights,
    json_extract(j.params_json, '$.eval_boards')       AS eval_boards,
    json_extract(j.params_json, '$.eval_board_size')   AS eval_board_size,
    r.success_rate                                     AS success_rate,
    r.training_success                                 AS training_success,
    r.cell_accuracy                                    AS cell_accuracy,
    r.final_loss                                       AS final_loss,
    r.param_count                                      AS param_count,
    r.wall_seconds                                     AS wall_seconds,
    r.device                                           AS device,
    coalesce(r.worker_id, j.worker_id)                 AS worker_id,
    r.attempt                                          AS attempt,
    r.started_at                                       AS started_at,
    r.finished_at                                      AS finished_at,
    r.weights_path                                     AS weights_path,
    r.loss_curve_json                                  AS loss_curve_json
FROM jobs AS j
JOIN sweeps AS s ON s.id = j.sweep_id
LEFT JOIN results AS r ON r.job_id = j.id;
