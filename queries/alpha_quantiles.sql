-- name: alpha_quantiles
-- purpose: distribution of the layer power-law exponent alpha and of alpha-hat (alpha_weighted) over reliable fits, per group
-- param: scan_id = NULL  -- one scan, or NULL for every scan
-- param: group_by = 'kind'  -- 'kind', 'family', 'model' or 'all'
-- output: grp, n_layers, alpha_mean, alpha_q10, alpha_q25, alpha_q50, alpha_q75, alpha_q90, frac_alpha_lt2, frac_alpha_gt6, alpha_hat_q10, alpha_hat_q50, alpha_hat_q90
WITH fits AS (
    SELECT CASE $group_by WHEN 'kind' THEN kind WHEN 'family' THEN family WHEN 'model' THEN model_id
                ELSE 'all' END AS grp,
           alpha, alpha_weighted
    FROM layers_with_family
    WHERE status = 'ok' AND alpha IS NOT NULL AND fit_reliable
      AND ($scan_id IS NULL OR scan_id = $scan_id)
)
SELECT grp,
       count(*) AS n_layers,
       avg(alpha) AS alpha_mean,
       quantile_cont(alpha, 0.10) AS alpha_q10,
       quantile_cont(alpha, 0.25) AS alpha_q25,
       quantile_cont(alpha, 0.50) AS alpha_q50,
       quantile_cont(alpha, 0.75) AS alpha_q75,
       quantile_cont(alpha, 0.90) AS alpha_q90,
       avg(CAST(alpha < 2 AS DOUBLE)) AS frac_alpha_lt2,
       avg(CAST(alpha > 6 AS DOUBLE)) AS frac_alpha_gt6,
       quantile_cont(alpha_weighted, 0.10) AS alpha_hat_q10,
       quantile_cont(alpha_weighted, 0.50) AS alpha_hat_q50,
       quantile_cont(alpha_weighted, 0.90) AS alpha_hat_q90
FROM fits
GROUP BY grp
ORDER BY grp
