"""The knee workloads' k-space reader (fastMRI and NC2019 HDF5): file scanning and headers
(``fastmri``), undersampling masks (``masks``), slices as a Dataset (``slices``), the centred
FFTs and zero-filled images (``transforms``), and the synthetic twin in both layouts
(``synth``). Shared by ``reconstruction`` and ``knee_gan``."""
