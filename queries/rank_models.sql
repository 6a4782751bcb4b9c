-- name: rank_models
-- purpose: rank the models of each family (within one dataset) by a model-level metric (lower = predicted better, as alpha-hat in NC21), with published top-1 and its rank beside it
-- param: scan_id = NULL  -- one scan, or NULL for every scan
-- param: metric = 'alpha_hat'  -- alpha_mean, alpha_hat, log_norm_mean, log_spectral_norm_mean, log_alpha_norm_mean or stable_rank_mean
-- param: family = NULL  -- one family, or NULL for all
-- output: scan_id, family, dataset, model_id, metric_value, rank_by_metric, top1, rank_by_top1
WITH vals AS (
    SELECT scan_id, family, dataset, model_id, top1,
           CASE $metric
               WHEN 'alpha_mean' THEN alpha_mean
               WHEN 'alpha_hat' THEN alpha_hat
               WHEN 'log_norm_mean' THEN log_norm_mean
               WHEN 'log_spectral_norm_mean' THEN log_spectral_norm_mean
               WHEN 'log_alpha_norm_mean' THEN log_alpha_norm_mean
               WHEN 'stable_rank_mean' THEN stable_rank_mean
               ELSE error('unknown metric ' || coalesce($metric, 'NULL') || '; use alpha_mean, alpha_hat, log_norm_mean, '
                          || 'log_spectral_norm_mean, log_alpha_norm_mean or stable_rank_mean')
           END AS metric_value
    FROM models_with_accuracy
    WHERE status = 'ok'
      AND ($scan_id IS NULL OR scan_id = $scan_id)
      AND ($family IS NULL OR family = $family)
)
SELECT scan_id, family, dataset, model_id, metric_value,
       rank() OVER (PARTITION BY scan_id, family, dataset ORDER BY metric_value ASC NULLS LAST) AS rank_by_metric,
       top1,
       CASE WHEN top1 IS NOT NULL
            THEN rank() OVER (PARTITION BY scan_id, family, dataset ORDER BY top1 DESC NULLS LAST) END AS rank_by_top1
FROM vals
ORDER BY scan_id, family, dataset, rank_by_metric, model_id
