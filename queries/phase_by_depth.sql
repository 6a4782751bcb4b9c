-- name: phase_by_depth
-- purpose: phase statistics by relative depth: each model's layers split into equal buckets of (layer_index + 0.5) / n_layers
-- param: scan_id = NULL  -- one scan, or NULL for every scan
-- param: buckets = 5  -- number of depth buckets (bucket 0 = first layers)
-- output: depth_bucket, phase, n_layers, fraction, alpha_median
SELECT least(CAST(floor(depth * $buckets) AS INTEGER), $buckets - 1) AS depth_bucket, phase,
       count(*) AS n_layers,
       count(*) / sum(count(*)) OVER (PARTITION BY depth_bucket) AS fraction,
       median(alpha) AS alpha_median
FROM layers_with_family
WHERE status = 'ok' AND phase IS NOT NULL
  AND ($scan_id IS NULL OR scan_id = $scan_id)
  AND CASE WHEN $buckets >= 1 THEN true ELSE error('buckets must be >= 1; got ' || coalesce(CAST($buckets AS VARCHAR), 'NULL')) END
GROUP BY depth_bucket, phase
ORDER BY depth_bucket, phase
