-- name: phase_by_model
-- purpose: how many of each model's analysed layers fall in each of the 5+1 phases
-- param: scan_id = NULL  -- one scan, or NULL for every scan
-- output: scan_id, model_id, phase, n_layers, fraction
SELECT scan_id, model_id, phase,
       count(*) AS n_layers,
       count(*) / sum(count(*)) OVER (PARTITION BY scan_id, model_id) AS fraction
FROM layers
WHERE status = 'ok' AND phase IS NOT NULL
  AND ($scan_id IS NULL OR scan_id = $scan_id)
GROUP BY scan_id, model_id, phase
ORDER BY scan_id, model_id, phase
