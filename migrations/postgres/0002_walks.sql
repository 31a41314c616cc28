-- lifesweep schema, version 2 (PostgreSQL): loss walks. Mirrors migrations/sqlite/0002_walks.sql.

ALTER TABLE jobs ADD COLUMN kind text NOT NULL DEFAULT 'train' CHECK (kind IN ('train', 'walk'));
ALTER TABLE jobs ADD COLUMN walk_json text;
ALTER TABLE jobs ADD COLUMN walk_of bigint REFERENCES jobs (id) ON DELETE CASCADE;

CREATE INDEX jobs_by_walk_of ON jobs (walk_of) WHERE walk_of IS NOT NULL;

CREATE TABLE walk_points (
    job_id        bigint           NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    point         bigint           NOT NULL CHECK (point >= 0),
    fraction      double precision,
    distance      double precision NOT NULL,
    loss          double precision,
    success_rate  double precision,
    cell_accuracy double precision,
    PRIMARY KEY (job_id, point)
);

-- The runs view lists training runs only.
DROP VIEW runs;
CREATE VIEW runs AS
SELECT
    j.id                                     AS job_id,
    s.name                                   AS sweep,
    j.job_key                                AS job_key,
    j.state                                  AS state,
    j.attempts                               AS attempts,
    j.error                                  AS error,
    p.p ->> 'rule'                           AS rule,
    (p.p ->> 'steps')::bigint                AS steps,
    (p.p ->> 'seed')::bigint                 AS seed,
    (p.p ->> 'm_factor')::bigint             AS m_factor,
    (p.p ->> 'd_factor')::double precision   AS d_factor,
    (p.p ->> 'presolve')::boolean::int       AS presolve,
    (p.p -> 'solve_layers')::text            AS solve_layers,
    (p.p ->> 'use_sigmoid')::boolean::int    AS use_sigmoid,
    p.p ->> 'activation'                     AS activation,
    (p.p ->> 'normalize')::boolean::int      AS normalize,
    (p.p ->> 'normalize_shift')::boolean::int AS normalize_shift,
    (p.p ->> 'batches')::bigint              AS batches,
    (p.p ->> 'batch_size')::bigint           AS batch_size,
    (p.p ->> 'learning_rate')::double precision AS learning_rate,
    (p.p ->> 'board_size')::bigint           AS board_size,
    (p.p ->> 'density')::double precision    AS density,
    (p.p ->> 'loss_every')::bigint           AS loss_every,
    (p.p ->> 'save_weights')::boolean::int   AS save_weights,
    (p.p ->> 'eval_boards')::bigint          AS eval_boards,
    (p.p ->> 'eval_board_size')::bigint      AS eval_board_size,
    r.success_rate                           AS success_rate,
    r.training_success                       AS training_success,
    r.cell_accuracy                          AS cell_accuracy,
    r.final_loss                             AS final_loss,
    r.param_count                            AS param_count,
    r.wall_seconds                           AS wall_seconds,
    r.device                                 AS device,
    coalesce(r.worker_id, j.worker_id)       AS worker_id,
    r.attempt                                AS attempt,
    r.started_at                             AS started_at,
    r.finished_at                            AS finished_at,
    r.weights_path                           AS weights_path,
    r.loss_curve_json                        AS loss_curve_json
FROM jobs AS j
JOIN sweeps AS s ON s.id = j.sweep_id
CROSS JOIN LATERAL (SELECT j.params_json::jsonb AS p) AS p
LEFT JOIN results AS r ON r.job_id = j.id
WHERE j.kind = 'train';

CREATE VIEW walks AS
SELECT
    w.id                                     AS walk_job_id,
    s.name                                   AS sweep,
    w.walk_of                                AS run_job_id,
    q.q ->> 'kind'                           AS kind,
    (q.q ->> 'align')::boolean::int          AS aligned,
    w.state                                  AS state,
    (q.p ->> 'steps')::bigint               AS steps,
    (q.p ->> 'm_factor')::bigint            AS m_factor,
    (q.p ->> 'seed')::bigint                AS seed,
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
CROSS JOIN LATERAL (SELECT w.walk_json::jsonb AS q, w.params_json::jsonb AS p) AS q
LEFT JOIN results AS r ON r.job_id = w.walk_of
LEFT JOIN walk_points AS p ON p.job_id = w.id
WHERE w.kind = 'walk';
