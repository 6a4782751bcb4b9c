-- name: alpha_quantiles
-- purpose: distribution of the layer power-law exponent alpha and of alpha-hat (alpha_weighted) over reliable fits, per group
-- param: scan_id = NULL  -- one scan, or NULL for every scan
-- param: group_by = 'kind'  -- 'kind', 'family', 'model' or 'all'
-- output: grp, n_layers, alpha_mean, alpha_q10, alpha_q25, alpha_q50, alpha_q75, alpha_q90, frac_alpha_lt2, frac_alpha_gt6, alpha_hat_q10, alpha_hat_q50, alpha_hat_q90
WITH fits AS (
    SELECT CASE $group_by WHEN 'kind' THEN kind WHEN 'family' THEN family WHEN 'model' THEN model_id
                WHEN 'all' THEN 'all'
                ELSE error('unknown group_by ' || coalesce($group_by, 'NULL') || '; use kind, family, model or all') END AS grp,
           alpha, alpha_weighted
    FROM layers_family
    WHERE status = 'ok' AND alpha IS NOT NULL AND fit_reliable
      AND ($scan_id IS NULL OR scan_id = $scan_id)
),
stats AS (  -- one sort per column for all its quantiles (a list of fractions), not one per quantile
    SELECT grp,
           count(*) AS n_layers,
           avg(alpha) AS alpha_mean,
           quantile_cont(alpha, [0.10, 0.25, 0.50, 0.75, 0.90]) AS q,
           avg(CAST(alpha < 2 AS DOUBLE)) AS frac_alpha_lt2,
           avg(CAST(alpha > 6 AS DOUBLE)) AS frac_alpha_gt6,
           quantile_cont(alpha_weighted, [0.10, 0.50, 0.90]) AS q_hat
    FROM fits
    GROUP BY grp
)
SELECT grp, n_layers, alpha_mean,
       q[1] AS alpha_q10, q[2] AS alpha_q25, q[3] AS alpha_q50, q[4] AS alpha_q75, q[5] AS alpha_q90,
       frac_alpha_lt2, frac_alpha_gt6,
       q_hat[1] AS alpha_hat_q10, q_hat[2] AS alpha_hat_q50, q_hat[3] AS alpha_hat_q90
FROM stats
ORDER BY grp
