-- name: metric_accuracy_correlation
-- purpose: per family, correlate each model-level metric with published top-1 accuracy (Martin, Peng & Mahoney, Nat. Commun. 2021): Pearson, Spearman, Kendall tau-b, and R^2 / RMSE of the least-squares line top1 ~ metric
-- param: scan_id = NULL  -- one scan, or NULL for every scan (statistics are still computed per scan)
-- param: dataset = NULL  -- catalog dataset such as 'imagenet-1k', or NULL for all
-- param: min_models = 5  -- families with fewer models having both values are left out (NC21 used 5)
-- output: scan_id, dataset, family, metric, n, pearson, spearman, kendall_tau, r2, rmse, slope, intercept
-- notes: Spearman = Pearson of average ranks (ties get the mean of their ranks, as scipy.stats.spearmanr);
--   Kendall tau-b = sum sign(dx)sign(dy) / sqrt(pairs untied in x * pairs untied in y), as scipy.stats.kendalltau;
--   rmse = sqrt(sum of squared residuals / n) of the fit top1 = slope * metric + intercept (accuracy points; it
--   equals the RMSE of regressing top-1 error on the metric, and is unchanged by affine rescaling of the metric).
--   Signs are against accuracy: a metric that falls as accuracy rises has negative correlations.
WITH base AS (
    SELECT scan_id, dataset, family, model_id, top1,
           alpha_mean, alpha_hat, log_norm_mean, log_spectral_norm_mean, log_alpha_norm_mean, stable_rank_mean
    FROM models_with_accuracy
    WHERE status = 'ok' AND top1 IS NOT NULL AND family IS NOT NULL
      AND ($scan_id IS NULL OR scan_id = $scan_id)
      AND ($dataset IS NULL OR dataset = $dataset)
),
long AS (
    UNPIVOT base
    ON alpha_mean, alpha_hat, log_norm_mean, log_spectral_norm_mean, log_alpha_norm_mean, stable_rank_mean
    INTO NAME metric VALUE x
),
points AS (
    SELECT scan_id, dataset, family, metric, model_id, x, top1 AS y
    FROM long
    WHERE x IS NOT NULL AND isfinite(x)
),
ranked AS (  -- average rank of a tie = (first rank + last rank) / 2 = (rank() + rows with a value <= it) / 2
            -- (the default frame of an ordered window ends at the last tied row): one sort per variable
    SELECT *,
           (rank() OVER by_x + count(*) OVER by_x) / 2.0 AS rank_x,
           (rank() OVER by_y + count(*) OVER by_y) / 2.0 AS rank_y,
           row_number() OVER by_x AS i  -- a number per point within its group, for the pairs below
    FROM points
    WINDOW by_x AS (PARTITION BY scan_id, dataset, family, metric ORDER BY x),
           by_y AS (PARTITION BY scan_id, dataset, family, metric ORDER BY y)
),
moments AS (  -- groups are left out after the ranks: ranks are within one group, so the filter commutes
    SELECT row_number() OVER () AS g, scan_id, dataset, family, metric,
           count(*) AS n,
           corr(y, x) AS pearson,
           corr(rank_y, rank_x) AS spearman,
           regr_r2(y, x) AS r2,
           regr_slope(y, x) AS slope,
           regr_intercept(y, x) AS intercept
    FROM ranked
    GROUP BY scan_id, dataset, family, metric
    HAVING count(*) >= $min_models
),
kept AS (  -- the points of the kept groups, keyed by the group's number g
    SELECT m.g, p.i, p.x, p.y, p.y - (m.slope * p.x + m.intercept) AS residual
    FROM ranked AS p
    JOIN moments AS m
      ON p.scan_id = m.scan_id AND p.dataset IS NOT DISTINCT FROM m.dataset AND p.family = m.family
     AND p.metric = m.metric
),
residuals AS (  -- RMSE from the residuals themselves: sqrt(syy·(1 − r²)/n) cancels catastrophically near r² = 1
    SELECT g, sqrt(avg(power(residual, 2))) AS rmse
    FROM kept
    GROUP BY g
),
kendall AS (
    SELECT a.g,
           sum(sign(a.x - b.x) * sign(a.y - b.y))
             / sqrt(sum(abs(sign(a.x - b.x))) * sum(abs(sign(a.y - b.y)))) AS kendall_tau
    FROM kept AS a
    JOIN kept AS b
      ON a.g = b.g AND a.i < b.i
    GROUP BY a.g
)
SELECT m.scan_id, m.dataset, m.family, m.metric, m.n, m.pearson, m.spearman, k.kendall_tau, m.r2, r.rmse,
       m.slope, m.intercept
FROM moments AS m
LEFT JOIN kendall AS k USING (g)
LEFT JOIN residuals AS r USING (g)
ORDER BY m.scan_id, m.dataset, m.family, m.metric
