-- name: phase_by_family
-- purpose: phase statistics per model family (catalog family; the id's source prefix when not in a catalog)
-- param: scan_id = NULL  -- one scan, or NULL for every scan
-- output: family, phase, n_models, n_layers, fraction, alpha_median
SELECT family, phase,
       count(DISTINCT model_id) AS n_models,
       count(*) AS n_layers,
       count(*) / sum(count(*)) OVER (PARTITION BY family) AS fraction,
       median(alpha) AS alpha_median
FROM layers_family
WHERE status = 'ok' AND phase IS NOT NULL
  AND ($scan_id IS NULL OR scan_id = $scan_id)
GROUP BY family, phase
ORDER BY family, phase
