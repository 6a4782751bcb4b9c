"""Pure numerical core: eigenvalues, power-law and Marchenko–Pastur fits, metrics (numpy/scipy only)."""
