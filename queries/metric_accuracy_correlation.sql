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
    SELECT scan_id, dataset, family, metric, model_id, x, top1 AS y,
           count(*) OVER (PARTITION BY scan_id, dataset, family, metric) AS n_points
    FROM long
    WHERE x IS NOT NULL AND isfinite(x)
),
kept AS (
    SELECT * FROM points WHERE n_points >= $min_models
),
ranked AS (
    SELECT *,
           rank() OVER (PARTITION BY scan_id, dataset, family, metric ORDER BY x)
             + (count(*) OVER (PARTITION BY scan_id, dataset, family, metric, x) - 1) / 2.0 AS rank_x,
           rank() OVER (PARTITION BY scan_id, dataset, family, metric ORDER BY y)
             + (count(*) OVER (PARTITION BY scan_id, dataset, family, metric, y) - 1) / 2.0 AS rank_y
    FROM kept
),
moments AS (
    SELECT scan_id, dataset, family, metric,
           count(*) AS n,
           corr(y, x) AS pearson,
           corr(rank_y, rank_x) AS spearman,
           regr_r2(y, x) AS r2,
           regr_slope(y, x) AS slope,
           regr_intercept(y, x) AS intercept
    FROM ranked
    GROUP BY scan_id, dataset, family, metric
),
residuals AS (  -- RMSE from the residuals themselves: sqrt(syy·(1 − r²)/n) cancels catastrophically near r² = 1
    SELECT k.scan_id, k.dataset, k.family, k.metric,
           sqrt(avg(power(k.y - (m.slope * k.x + m.intercept), 2))) AS rmse
    FROM kept AS k
    JOIN moments AS m
      ON k.scan_id = m.scan_id AND k.dataset IS NOT DISTINCT FROM m.dataset AND k.family = m.family
     AND k.metric = m.metric
    GROUP BY k.scan_id, k.dataset, k.family, k.metric
),
kendall AS (
    SELECT a.scan_id, a.dataset, a.family, a.metric,
           sum(sign(a.x - b.x) * sign(a.y - b.y))
             / sqrt(sum(abs(sign(a.x - b.x))) * sum(abs(sign(a.y - b.y)))) AS kendall_tau
    FROM kept AS a
    JOIN kept AS b
      ON a.scan_id = b.scan_id AND a.dataset IS NOT DISTINCT FROM b.dataset AND a.family = b.family
     AND a.metric = b.metric AND a.model_id < b.model_id
    GROUP BY a.scan_id, a.dataset, a.family, a.metric
)
SELECT m.scan_id, m.dataset, m.family, m.metric, m.n, m.pearson, m.spearman, k.kendall_tau, m.r2, r.rmse,
       m.slope, m.intercept
FROM moments AS m
LEFT JOIN kendall AS k
  ON m.scan_id = k.scan_id AND m.dataset IS NOT DISTINCT FROM k.dataset AND m.family = k.family
 AND m.metric = k.metric
LEFT JOIN residuals AS r
  ON m.scan_id = r.scan_id AND m.dataset IS NOT DISTINCT FROM r.dataset AND m.family = r.family
 AND m.metric = r.metric
ORDER BY m.scan_id, m.dataset, m.family, m.metric
