-- lifesweep schema, version 2 (SQLite): loss walks. Described in docs/schema.md.
--
-- A loss walk of a finished run is a job like a training run, so that the same workers claim,
-- lease and finish it: a job of kind 'walk' carries the trained run's parameters in
-- params_json (it belongs to the same grid point), what to walk in walk_json and the walked
-- run in walk_of. Its result is one walk_points row per point instead of a results row.

ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'train' CHECK (kind IN ('train', 'walk'));
-- Canonical JSON of the walk (lifesweep_spec::WalkSpec); NULL for training jobs.
ALTER TABLE jobs ADD COLUMN walk_json TEXT;
-- The run a walk starts from; NULL for training jobs.
ALTER TABLE jobs ADD COLUMN walk_of INTEGER REFERENCES jobs (id) ON DELETE CASCADE;

CREATE INDEX jobs_by_walk_of ON jobs (walk_of) WHERE walk_of IS NOT NULL;

-- One row per point of a finished walk. REAL metrics are NULL where not finite.
CREATE TABLE walk_points (
    job_id        INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    point         INTEGER NOT NULL CHECK (point >= 0),
    -- Presolve walks: the fraction of the way to the solution, 0..1; NULL for random walks.
    fraction      REAL,
    -- L1 distance from the start in weight space.
    distance      REAL    NOT NULL,
    loss          REAL,
    success_rate  REAL,
    cell_accuracy REAL,
    PRIMARY KEY (job_id, point)
);

-- The runs view lists training runs only.
DROP VIEW runs;
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
LEFT JOIN results AS r ON r.job_id = j.id
WHERE j.kind = 'train';

-- Every point of every walk with the run it walked from, for sqlite3 and pandas:
--   sqlite3 lifesweep.db "select run_job_id, kind, distance, loss from walks order by 1, 2, 3"
CREATE VIEW walks AS
SELECT
    w.id                                     AS walk_job_id,
    s.name                                   AS sweep,
    w.walk_of                                AS run_job_id,
    json_extract(w.walk_json, '$.kind')      AS kind,
    json_extract(w.walk_json, '$.align')     AS aligned,
    w.state                                  AS state,
    json_extract(w.params_json, '$.steps')   AS steps,
    json_extract(w.params_json, '$.m_factor') AS m_factor,
    json_extract(w.params_json, '$.seed')    AS seed,
    r.training_success                       AS run_training_success,
    r.success_rate                           AS run_success_rate,
    p.point                                  AS point,
    p.fraction                               AS fraction,
    p.distance                               AS distance,
    p.loss                                   AS loss,
    p.success_rate                           AS success_rate,
    p.cell_accuracy                          AS cell_accuracy
FROM jobs AS w
JOIN sweeps AS s ON s.id = w.sweep_id
LEFT JOIN results AS r ON r.job_id = w.walk_of
LEFT JOIN walk_points AS p ON p.job_id = w.id
WHERE w.kind = 'walk';
