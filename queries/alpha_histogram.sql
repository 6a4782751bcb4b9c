-- name: alpha_histogram
-- purpose: histogram of layer alpha (or alpha-hat) over reliable fits; values outside [lo, hi) go to the first/last bin
-- param: scan_id = NULL  -- one scan, or NULL for every scan
-- param: metric = 'alpha'  -- 'alpha' or 'alpha_weighted'
-- param: lo = 0.0  -- left edge of the first bin
-- param: hi = 10.0  -- right edge of the last bin
-- param: bins = 20  -- number of equal-width bins
-- output: bin, bin_lo, bin_hi, n_layers, fraction
WITH vals AS (
    SELECT CASE $metric WHEN 'alpha_weighted' THEN alpha_weighted ELSE alpha END AS v
    FROM layers
    WHERE status = 'ok' AND fit_reliable AND ($scan_id IS NULL OR scan_id = $scan_id)
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
