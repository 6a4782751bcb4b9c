-- name: alpha_histogram
-- purpose: histogram of layer alpha (or alpha-hat) over reliable fits; values outside [lo, hi) go to the first/last bin
-- param: scan_id = NULL  -- one scan, or NULL for every scan
-- param: metric = 'alpha'  -- 'alpha', or 'alpha_weighted' (alias 'alpha_hat': alpha * log10 lambda_max per layer)
-- param: lo = 0.0  -- left edge of the first bin
-- param: hi = 10.0  -- right edge of the last bin
-- param: bins = 20  -- number of equal-width bins (>= 1; and hi > lo)
-- output: bin, bin_lo, bin_hi, n_layers, fraction
WITH vals AS (
    SELECT CASE $metric WHEN 'alpha' THEN alpha WHEN 'alpha_weighted' THEN alpha_weighted
                        WHEN 'alpha_hat' THEN alpha_weighted
                        ELSE error('unknown metric ' || coalesce($metric, 'NULL') || '; use alpha, alpha_weighted or alpha_hat') END AS v
    FROM layers
    WHERE status = 'ok' AND fit_reliable AND ($scan_id IS NULL OR scan_id = $scan_id)
      AND CASE WHEN $bins >= 1 AND $hi > $lo THEN true
               ELSE error('bins must be >= 1 and hi > lo; got bins=' || coalesce(CAST($bins AS VARCHAR), 'NULL') || ', lo='
                          || coalesce(CAST($lo AS VARCHAR), 'NULL') || ', hi=' || coalesce(CAST($hi AS VARCHAR), 'NULL')) END
),
binned AS (
    SELECT greatest(0, least($bins - 1, CAST(floor((v - $lo) / ($hi - $lo) * $bins) AS INTEGER))) AS bin
    FROM vals
    WHERE v IS NOT NULL AND isfinite(v)
)
SELECT bin,
       $lo + bin * ($hi - $lo) / $bins AS bin_lo,
       $lo + (bin + 1) * ($hi - $lo) / $bins AS bin_hi,
       count(*) AS n_layers,
       count(*) / sum(count(*)) OVER () AS fraction
FROM binned
GROUP BY bin
ORDER BY bin
