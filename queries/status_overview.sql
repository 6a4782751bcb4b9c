-- name: status_overview
-- purpose: what succeeded, was skipped or failed, and why: models by status and error class, layers by status and reason
-- param: scan_id = NULL  -- one scan, or NULL for every scan
-- output: level, status, why, n, example_model_id
SELECT 'model' AS level, status, coalesce(nullif(error_class, ''), nullif(reason, ''), '') AS why,
       count(*) AS n, min(model_id) AS example_model_id
FROM models
WHERE $scan_id IS NULL OR scan_id = $scan_id
GROUP BY status, why
UNION ALL
SELECT 'layer' AS level, status, coalesce(reason, '') AS why, count(*) AS n, min(model_id) AS example_model_id
FROM layers
WHERE $scan_id IS NULL OR scan_id = $scan_id
GROUP BY status, why
ORDER BY level, status, n DESC, why
