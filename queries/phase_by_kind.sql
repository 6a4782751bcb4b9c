-- name: phase_by_kind
-- purpose: phase statistics per layer kind (linear, conv2d, embedding, ...)
-- param: scan_id = NULL  -- one scan, or NULL for every scan
-- output: kind, phase, n_models, n_layers, fraction, alpha_median
SELECT kind, phase,
       count(DISTINCT model_id) AS n_models,
       count(*) AS n_layers,
       count(*) / sum(count(*)) OVER (PARTITION BY kind) AS fraction,
       median(alpha) AS alpha_median
FROM layers
WHERE status = 'ok' AND phase IS NOT NULL
  AND ($scan_id IS NULL OR scan_id = $scan_id)
GROUP BY kind, phase
ORDER BY kind, phase
